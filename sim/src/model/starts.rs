//! Targeted bounds: the exhaustive search starts from a chosen state near a trace instead
//! of the first view, so that a trace that needs a restart or a retransmission, lapsed
//! leases *and* a later exclusion fits in a bound `cargo test` can afford.
//!
//! A start is a *prefix*: steps played from the first view, each of which must be enabled
//! under the full rules (mutation or not, the prefix is played with every rule in place,
//! and [`ProtocolModel::start_state`] panics if a step is not enabled), so every start is
//! reachable by construction. The checker then explores every state reachable from it
//! under [`Bounds`](super::Bounds); the clock, crash, restart and ballot counts include the
//! prefix's, so a bound's limits are totals, as from the first view.

use super::state::*;
use super::ProtocolModel;

/// Where the exhaustive search starts: the first view, then these steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Start {
    /// The first view b1.0 of every replica but `Bounds::initially_out`, every lease just
    /// renewed.
    #[default]
    Initial,
    /// F4: 1 and 2 crash under 0's leases, 0 leaves both out as proven crashed (asking only
    /// itself) and is alone in the established b2.0{0}; 1 restarts and its quiet interval
    /// passes (t=1).
    ViewOfOne,
    /// R1: 2 crashes under 0's lease; 0 leaves it out (b2.0{0,1}, 1 accepts); 2 restarts
    /// and waits to rejoin; a tick passes (t=1) and 0 and 1 renew.
    TwoMembers,
    /// R3: (2 starts outside b1.0{0,1}) the primary 0 proposes adding 2; 1 and 2 accept the
    /// copy sent at t=0; their acceptances are in flight.
    AddingTwo,
    /// Restarted votes at once: the leases of the first view lapse (t=1); 2 renews with 0
    /// and with 1 (0 and 1, cut off from each other, do not), then crashes and restarts at
    /// once: 0 and 1 hold leases from its old incarnation, which it forgot promising.
    RestartedMidLease,
    /// The stale-evidence trace, half-way: from [`Start::RestartedMidLease`], 1 hears 2's
    /// new incarnation under its lease from the old one (evidence); a tick (t=2); the cut
    /// heals (0 and 1 renew); the primary 0, whose lease from 2 ran out, catches 2 up; 0
    /// and 2 renew.
    StaleEvidence,
    /// Amnesiac votes (disk loss): (2 starts outside b1.0{0,1}) the leases lapse (t=1); 0
    /// leaves 1 out as silent (b2.0{0}, asks 0 and 2, a majority), 2 votes, the view is
    /// established; 0 appends and commits value 0. 1 never heard of it.
    VotedOut,
    /// Amnesiac unwitnessed (the reviewer's lost-disk trace): (2 starts outside b1.0{0,1})
    /// the leases lapse (t=1); 1 leaves 0 out as silent with 2's vote (b2.1{1}), adds 2
    /// back (b3.1{1,2}), commits value 0 with 2, and renews with 2. 0 never heard of it: it
    /// is still the primary of b1.0{0,1}.
    LeftOutPrimary,
    /// Amnesiac recovers (disk loss under rule 8): 1 and 2 crash under 0's leases, 0 leaves
    /// both out (b2.0{0}) and commits value 0 alone.
    AloneWithEntry,
}

impl Start {
    /// The steps played from the first view, as [`super::Action`] displays them.
    pub fn prefix(self) -> &'static [&'static str] {
        match self {
            Start::Initial => &[],
            Start::ViewOfOne => &[
                "1 crashes (its address refuses)",
                "2 crashes (its address refuses)",
                "0 is refused by 1's address",
                "0 is refused by 2's address",
                "0 proposes to exclude proven {1,2} silent {}",
                "1 restarts as a new incarnation",
                "clock ticks",
            ],
            Start::TwoMembers => &[
                "2 crashes (its address refuses)",
                "0 is refused by 2's address",
                "0 proposes to exclude proven {2} silent {}",
                "1 accepts b2.0{0,1} (copy sent at 0)",
                "0 receives 1's acceptance of b2.0 (echo 0)",
                "2 restarts as a new incarnation",
                "clock ticks",
                "0 and 1 renew leases",
            ],
            Start::AddingTwo => &[
                "0 proposes to add 2",
                "1 accepts b2.0{0,1,2} (copy sent at 0)",
                "2 accepts b2.0{0,1,2} (copy sent at 0)",
            ],
            Start::RestartedMidLease => &[
                "clock ticks",
                "0 and 2 renew leases",
                "1 and 2 renew leases",
                "2 crashes (its address refuses)",
                "2 restarts as a new incarnation",
            ],
            Start::StaleEvidence => &[
                "clock ticks",
                "0 and 2 renew leases",
                "1 and 2 renew leases",
                "2 crashes (its address refuses)",
                "2 restarts as a new incarnation",
                "1 hears a newer incarnation of 2",
                "clock ticks",
                "0 and 1 renew leases",
                "0 replicates to 2",
                "0 and 2 renew leases",
            ],
            Start::VotedOut => &[
                "clock ticks",
                "0 proposes to exclude proven {} silent {1}",
                "2 accepts b2.0{0} (copy sent at 1)",
                "0 receives 2's acceptance of b2.0 (echo 1)",
                "0 appends a client value",
                "0 commits its next index",
            ],
            Start::LeftOutPrimary => &[
                "clock ticks",
                "1 proposes to exclude proven {} silent {0}",
                "2 accepts b2.1{1} (copy sent at 1)",
                "1 receives 2's acceptance of b2.1 (echo 1)",
                "1 proposes to add 2",
                "2 accepts b3.1{1,2} (copy sent at 1)",
                "1 receives 2's acceptance of b3.1 (echo 1)",
                "1 appends a client value",
                "1 replicates to 2",
                "1 commits its next index",
                "1 and 2 renew leases",
            ],
            Start::AloneWithEntry => &[
                "1 crashes (its address refuses)",
                "2 crashes (its address refuses)",
                "0 is refused by 1's address",
                "0 is refused by 2's address",
                "0 proposes to exclude proven {1,2} silent {}",
                "0 appends a client value",
                "0 commits its next index",
            ],
        }
    }
}

impl ProtocolModel {
    /// The first view: b1.0 of every replica but `initially_out`, leases just renewed.
    fn first_view(&self) -> State {
        let n = self.bounds.replicas;
        let all = ((1u16 << n) - 1) as Mask;
        let view = View {
            ballot: Ballot {
                num: 1,
                proposer: 0,
            },
            members: all & !self.bounds.initially_out,
        };
        let replicas = (0..n)
            .map(|r| {
                if has(view.members, r) {
                    Replica::new(view, self.bounds.lease)
                } else {
                    Replica::excluded(all)
                }
            })
            .collect();
        State {
            now: 0,
            replicas,
            network: Default::default(),
            next_value: 0,
            crashes: 0,
            silent_crashes: 0,
            restarts: 0,
            lost_disks: 0,
            duplicate_spoke: false,
            last_crash_at: 0,
            values_before_last_crash: 0,
            committed: Vec::new(),
            conflict: false,
            lost: false,
            fast_failover: false,
            cut_resolved: false,
        }
    }

    /// The state the search starts from: the first view, then the start's prefix, each step
    /// enabled under the full rules (panics otherwise: the start would not be reachable).
    pub fn start_state(&self) -> State {
        let rules = ProtocolModel::new(self.bounds.clone(), None);
        let mut s = self.first_view();
        for step in self.bounds.start.prefix() {
            let mut enabled = Vec::new();
            rules.enabled(&s, &mut enabled);
            let action = enabled
                .into_iter()
                .find(|a| a.to_string() == *step)
                .unwrap_or_else(|| panic!("{:?}: {step:?} is not enabled", self.bounds.start));
            s = rules
                .apply(&s, action)
                .unwrap_or_else(|| panic!("{:?}: {step:?} fails", self.bounds.start));
        }
        s
    }
}
