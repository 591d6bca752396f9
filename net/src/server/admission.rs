//! Connection limits of one listener: so many connections in all, so many from one address.

use std::collections::HashMap;
use std::net::IpAddr;

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Every slot is taken (this many).
    Full(usize),
    /// This address holds its share already.
    Address(usize, IpAddr),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Full(n) => write!(f, "{n} connections already open"),
            Refusal::Address(n, ip) => write!(f, "{n} connections already open from {ip}"),
        }
    }
}

#[derive(Debug)]
pub(super) struct Admission {
    max_total: usize,
    max_per_address: usize,
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

impl Admission {
    pub(super) fn new(max_total: u32, max_per_address: u32) -> Admission {
        Admission {
            max_total: max_total as usize,
            max_per_address: max_per_address as usize,
            total: 0,
            per_address: HashMap::new(),
        }
    }

    /// Counts a new connection from `ip`, or says which limit refuses it.
    pub(super) fn admit(&mut self, ip: IpAddr) -> Result<(), Refusal> {
        if self.total >= self.max_total {
            return Err(Refusal::Full(self.total));
        }
        let count = self.per_address.entry(ip).or_insert(0);
        if *count >= self.max_per_address {
            return Err(Refusal::Address(*count, ip));
        }
        *count += 1;
        self.total += 1;
        Ok(())
    }

    /// A connection admitted from `ip` has closed.
    pub(super) fn release(&mut self, ip: IpAddr) {
        if let Some(count) = self.per_address.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&ip);
            }
            self.total -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_total_and_per_address_and_frees_on_release() {
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let c: IpAddr = [10, 0, 0, 3].into();
        let mut adm = Admission::new(3, 2);
        assert!(adm.admit(a).is_ok());
        assert!(adm.admit(a).is_ok());
        assert_eq!(
            adm.admit(a),
            Err(Refusal::Address(2, a)),
            "third from one address"
        );
        assert!(adm.admit(b).is_ok());
        assert_eq!(adm.admit(c), Err(Refusal::Full(3)), "fourth in all");
        adm.release(a);
        assert!(adm.admit(c).is_ok());
        assert!(adm.admit(a).is_err(), "total is full again");
        adm.release(b);
        assert!(adm.admit(a).is_ok());
    }
}
