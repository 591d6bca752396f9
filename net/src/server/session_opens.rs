//! How fast sessions may be opened: a token bucket per client connection and one per address.
//! A client opens one session per process (and one more after its session expired), so the
//! defaults never bind it. A connection over its own rate is closed (its flood costs it a new
//! connection and handshake each time, not the replica's loop a frame each); openings over
//! its address's rate are dropped unanswered (other clients behind that address retry later).
//! Together they bound how fast one client can churn the client table.

use chat_core::config::NetLimits;
use chat_core::time::Instant;
use mio::Token;
use std::collections::HashMap;
use std::net::IpAddr;

/// Address buckets kept before the full (refilled, hence forgettable) ones are dropped.
const PRUNE_ABOVE: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Clone, Copy, Debug)]
struct Rate {
    per_s: f64,
    burst: f64,
}

impl Rate {
    fn full(self, now: Instant) -> Bucket {
        Bucket {
            tokens: self.burst,
            at: now,
        }
    }

    /// Refills `bucket` up to `now`; true if it is full again.
    fn refill(self, bucket: &mut Bucket, now: Instant) -> bool {
        let secs = now.saturating_sub(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + secs * self.per_s).min(self.burst);
        bucket.at = bucket.at.max(now);
        bucket.tokens >= self.burst
    }
}

/// What [`SessionOpens::allow`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Allowed,
    /// This connection opens sessions faster than any client does.
    ConnectionOver,
    /// The connections of this address, together, open sessions too fast.
    AddressOver,
}

#[derive(Debug)]
pub(super) struct SessionOpens {
    connection: Rate,
    address: Rate,
    per_connection: HashMap<Token, Bucket>,
    per_address: HashMap<IpAddr, Bucket>,
}

impl SessionOpens {
    pub(super) fn new(net: &NetLimits) -> SessionOpens {
        SessionOpens {
            connection: Rate {
                per_s: net.session_opens_per_s_per_connection.into(),
                burst: net.session_open_burst_per_connection.into(),
            },
            address: Rate {
                per_s: net.session_opens_per_s_per_address.into(),
                burst: net.session_open_burst_per_address.into(),
            },
            per_connection: HashMap::new(),
            per_address: HashMap::new(),
        }
    }

    /// Whether connection `token` from `ip` may open a session now; if so, it is counted.
    pub(super) fn allow(&mut self, token: Token, ip: IpAddr, now: Instant) -> Verdict {
        if self.per_address.len() > PRUNE_ABOVE {
            let rate = self.address;
            self.per_address
                .retain(|_, bucket| !rate.refill(bucket, now));
        }
        let (conn_rate, addr_rate) = (self.connection, self.address);
        let conn = self
            .per_connection
            .entry(token)
            .or_insert_with(|| conn_rate.full(now));
        let addr = self
            .per_address
            .entry(ip)
            .or_insert_with(|| addr_rate.full(now));
        conn_rate.refill(conn, now);
        addr_rate.refill(addr, now);
        if conn.tokens < 1.0 {
            return Verdict::ConnectionOver;
        }
        if addr.tokens < 1.0 {
            return Verdict::AddressOver;
        }
        conn.tokens -= 1.0;
        addr.tokens -= 1.0;
        Verdict::Allowed
    }

    /// The connection closed. (Its address keeps its bucket: reconnecting refills nothing.)
    pub(super) fn forget(&mut self, token: Token) {
        self.per_connection.remove(&token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::time::Duration;

    fn limits(conn: (u32, u32), addr: (u32, u32)) -> NetLimits {
        NetLimits {
            session_opens_per_s_per_connection: conn.0,
            session_open_burst_per_connection: conn.1,
            session_opens_per_s_per_address: addr.0,
            session_open_burst_per_address: addr.1,
            ..NetLimits::default()
        }
    }

    #[test]
    fn a_connection_gets_its_burst_then_its_rate() {
        let mut opens = SessionOpens::new(&limits((2, 3), (1000, 1000)));
        let ip: IpAddr = [10, 0, 0, 1].into();
        let t0 = Instant(1_000_000);
        let verdicts: Vec<Verdict> = (0..4).map(|_| opens.allow(Token(5), ip, t0)).collect();
        assert_eq!(verdicts[..3], [Verdict::Allowed; 3]);
        assert_eq!(verdicts[3], Verdict::ConnectionOver);
        // Another connection has its own bucket.
        assert_eq!(opens.allow(Token(6), ip, t0), Verdict::Allowed);
        // One more after half a second.
        let later = t0 + Duration::from_millis(500);
        assert_eq!(opens.allow(Token(5), ip, later), Verdict::Allowed);
        assert_eq!(opens.allow(Token(5), ip, later), Verdict::ConnectionOver);
        // A new connection starts full.
        opens.forget(Token(5));
        assert_eq!(opens.allow(Token(5), ip, later), Verdict::Allowed);
    }

    #[test]
    fn an_address_is_limited_over_all_its_connections_even_across_reconnections() {
        let mut opens = SessionOpens::new(&limits((100, 100), (10, 4)));
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let t0 = Instant(0);
        let allowed = (0..8)
            .filter(|&i| {
                let token = Token(i);
                let verdict = opens.allow(token, a, t0);
                opens.forget(token);
                verdict == Verdict::Allowed
            })
            .count();
        assert_eq!(allowed, 4);
        assert_eq!(opens.allow(Token(99), a, t0), Verdict::AddressOver);
        // Another address is not held back.
        assert_eq!(opens.allow(Token(100), b, t0), Verdict::Allowed);
        let later = t0 + Duration::from_millis(100);
        assert_eq!(opens.allow(Token(101), a, later), Verdict::Allowed);
    }
}
