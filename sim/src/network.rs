//! The virtual network: latency, loss, duplication and reordering between replicas;
//! ordered, lossless connections between clients and replicas; partitions that cut links.
//!
//! Replica-to-replica messages are datagrams here: each one is lost, duplicated or delayed
//! on its own, so they also arrive out of order. A client connection is a TCP stream: its
//! messages arrive in order and none is lost while it lives; a partition breaks it instead
//! (the engine closes connections that cross a cut).

use chat_core::ids::ReplicaId;
use chat_core::time::{Duration, Instant};
use rand::rngs::SmallRng;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};

/// An endpoint of the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    Replica(ReplicaId),
    /// A client slot (its sessions come and go; its network position does not).
    Client(usize),
}

/// Identifies one client connection.
pub type ConnId = u64;

/// Which way a message travels on a client connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    ToReplica,
    ToClient,
}

#[derive(Debug)]
pub struct Network {
    loss: f64,
    duplicate: f64,
    latency_us: (u64, u64),
    /// Directed links that drop everything.
    cut: BTreeSet<(Node, Node)>,
    /// The latest delivery scheduled on each connection and direction, to keep them in order.
    last_delivery: BTreeMap<(ConnId, Direction), Instant>,
}

impl Network {
    pub fn new(loss: f64, duplicate: f64, latency_us: (u64, u64)) -> Network {
        assert!(latency_us.0 <= latency_us.1);
        Network {
            loss,
            duplicate,
            latency_us,
            cut: BTreeSet::new(),
            last_delivery: BTreeMap::new(),
        }
    }

    /// Stops loss and duplication (the quiet phase); latency stays.
    pub fn stop_faults(&mut self) {
        self.loss = 0.0;
        self.duplicate = 0.0;
    }

    pub fn is_cut(&self, from: Node, to: Node) -> bool {
        self.cut.contains(&(from, to))
    }

    /// Drops everything from `from` to `to` (a one-way partition) until healed.
    pub fn cut_one_way(&mut self, from: Node, to: Node) {
        self.cut.insert((from, to));
    }

    /// Cuts every link between nodes on different sides, both ways. A node on no side keeps
    /// its links.
    pub fn partition(&mut self, sides: &[Vec<Node>]) {
        for (i, a_side) in sides.iter().enumerate() {
            for b_side in &sides[i + 1..] {
                for &a in a_side {
                    for &b in b_side {
                        self.cut.insert((a, b));
                        self.cut.insert((b, a));
                    }
                }
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Some link is cut (between replicas, or a client and a replica).
    pub fn has_cuts(&self) -> bool {
        !self.cut.is_empty()
    }

    fn latency(&self, rng: &mut SmallRng) -> Duration {
        Duration::from_micros(rng.gen_range(self.latency_us.0..=self.latency_us.1))
    }

    /// When a replica-to-replica message arrives: never (cut or lost), once, or twice.
    pub fn peer_deliveries(
        &self,
        rng: &mut SmallRng,
        now: Instant,
        from: ReplicaId,
        to: ReplicaId,
    ) -> Vec<Instant> {
        if self.is_cut(Node::Replica(from), Node::Replica(to)) || rng.gen_bool(self.loss) {
            return Vec::new();
        }
        let mut times = vec![now + self.latency(rng)];
        if rng.gen_bool(self.duplicate) {
            times.push(now + self.latency(rng));
        }
        times
    }

    /// When a message sent now on a connection arrives: after every earlier one on it.
    pub fn conn_delivery(
        &mut self,
        rng: &mut SmallRng,
        now: Instant,
        conn: ConnId,
        direction: Direction,
    ) -> Instant {
        let at = now + self.latency(rng);
        let last = self.last_delivery.entry((conn, direction)).or_insert(at);
        *last = (*last).max(at);
        *last
    }

    /// When a refusal (a connection reset) reaches the side that tried to connect.
    pub fn refusal_delivery(&self, rng: &mut SmallRng, now: Instant) -> Instant {
        now + self.latency(rng)
    }

    /// The connection is closed: forget its ordering state.
    pub fn forget_conn(&mut self, conn: ConnId) {
        self.last_delivery.remove(&(conn, Direction::ToReplica));
        self.last_delivery.remove(&(conn, Direction::ToClient));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn connections_keep_order_and_datagrams_do_not() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut net = Network::new(0.0, 0.0, (100, 20_000));
        let mut last = Instant::ZERO;
        for step in 0..1000 {
            let at = net.conn_delivery(&mut rng, Instant(step * 10), 1, Direction::ToClient);
            assert!(at >= last);
            last = at;
        }
        let times: Vec<Instant> = (0..1000)
            .map(|step| net.peer_deliveries(&mut rng, Instant(step * 10), 0, 1)[0])
            .collect();
        assert!(
            times.windows(2).any(|w| w[1] < w[0]),
            "datagrams should reorder"
        );
    }

    #[test]
    fn loss_and_duplication_rates() {
        let mut rng = SmallRng::seed_from_u64(1);
        let net = Network::new(0.1, 0.05, (100, 1_000));
        let counts: Vec<usize> = (0..10_000)
            .map(|_| net.peer_deliveries(&mut rng, Instant::ZERO, 0, 1).len())
            .collect();
        let lost = counts.iter().filter(|&&c| c == 0).count();
        let doubled = counts.iter().filter(|&&c| c == 2).count();
        assert!((800..1200).contains(&lost), "lost {lost}");
        assert!((300..650).contains(&doubled), "doubled {doubled}");
    }

    #[test]
    fn partitions_cut_both_ways_and_one_way_cuts_one() {
        let mut rng = SmallRng::seed_from_u64(2);
        let mut net = Network::new(0.0, 0.0, (100, 100));
        net.partition(&[
            vec![Node::Replica(0)],
            vec![Node::Replica(1), Node::Replica(2)],
        ]);
        assert!(net
            .peer_deliveries(&mut rng, Instant::ZERO, 0, 1)
            .is_empty());
        assert!(net
            .peer_deliveries(&mut rng, Instant::ZERO, 2, 0)
            .is_empty());
        assert_eq!(net.peer_deliveries(&mut rng, Instant::ZERO, 1, 2).len(), 1);
        net.heal();
        net.cut_one_way(Node::Replica(1), Node::Replica(2));
        assert!(net
            .peer_deliveries(&mut rng, Instant::ZERO, 1, 2)
            .is_empty());
        assert_eq!(net.peer_deliveries(&mut rng, Instant::ZERO, 2, 1).len(), 1);
        net.heal();
        assert!(!net.has_cuts());
    }
}
