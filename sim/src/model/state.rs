//! The model's state: replicas with their durable and volatile parts, the network, and the
//! ghost record of what was committed (read only by the properties).

use std::collections::BTreeSet;
use std::fmt;

/// A replica's index, `0..replicas`.
pub type Id = u8;
/// A set of replicas, one bit each.
pub type Mask = u8;
/// Abstract time in ticks of one global clock (see the module doc for drift).
pub type Time = u8;

/// The most replicas the model's fixed-size arrays hold.
pub const MAX_REPLICAS: usize = 5;

pub fn bit(id: Id) -> Mask {
    1 << id
}

pub fn has(mask: Mask, id: Id) -> bool {
    mask & bit(id) != 0
}

pub fn count(mask: Mask) -> u32 {
    mask.count_ones()
}

pub fn ids(mask: Mask) -> impl Iterator<Item = Id> {
    (0..MAX_REPLICAS as Id).filter(move |&i| has(mask, i))
}

/// (number, proposer), ordered by number then proposer (rule 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ballot {
    pub num: u8,
    pub proposer: Id,
}

/// A view: its ballot and members; the primary is the ballot's proposer (rule 2: the new
/// primary is the proposer, a member of both the base and the new view).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct View {
    pub ballot: Ballot,
    pub members: Mask,
}

impl View {
    pub fn primary(&self) -> Id {
        self.ballot.proposer
    }
}

/// Whether the process runs, and how it went down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Power {
    Up,
    /// Process crash on a host that stays up: connections to it are refused (evidence).
    Refusing,
    /// Host crash, freeze or partition: silence, never evidence.
    Silent,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Replica {
    // Durable: survives a restart.
    /// Bumped before the process first sends anything (rule 5).
    pub incarnation: u8,
    /// The highest ballot it promised in phase 1 or accepted (rule 1).
    pub promised: Ballot,
    /// Its highest accepted-or-voted view.
    pub accepted: View,
    /// `accepted` is a vote (rule 4b): a durable acceptance without the log.
    pub voted_only: bool,
    /// Client values; index `i` of the model is `log[i - 1]`.
    pub log: Vec<u8>,
    /// The highest view it knows to be established.
    pub established: View,

    pub power: Power,

    // Volatile: lost on a crash.
    /// Restarted (or excluded) and not yet back in an established view: it uses no
    /// evidence and proposes nothing (rule 7), except through rule 8.
    pub rejoining: bool,
    /// A restarted replica neither votes nor accepts before this time (rule 3).
    pub quiet_until: Time,
    /// Its lease from each peer runs until this time (exclusive).
    pub lease_from: [Time; MAX_REPLICAS],
    /// Its promise not to help exclude each peer runs until this time (exclusive).
    pub promise_to: [Time; MAX_REPLICAS],
    /// The incarnation of each peer it last heard from.
    pub heard: [u8; MAX_REPLICAS],
    /// Peers whose `heard` incarnation is proven crashed (rule 4a).
    pub evidence: Mask,
    pub proposal: Option<Proposal>,
    /// As primary: the log length each member durably acknowledged in its view.
    pub acked: [u8; MAX_REPLICAS],
    /// As primary: its commit index.
    pub commit: u8,
    /// As primary (rule 6, in bounds with `lag_reports`): when each member last
    /// acknowledged replication, and the members it reports lagging.
    pub acked_at: [Time; MAX_REPLICAS],
    pub lagging: Mask,
}

impl Replica {
    /// A member of `view` whose leases and promises to every peer were just renewed.
    pub fn new(view: View, lease: Time) -> Replica {
        Replica {
            incarnation: 1,
            promised: view.ballot,
            accepted: view,
            voted_only: false,
            log: Vec::new(),
            established: view,
            power: Power::Up,
            rejoining: false,
            quiet_until: 0,
            lease_from: [lease; MAX_REPLICAS],
            promise_to: [lease; MAX_REPLICAS],
            heard: [1; MAX_REPLICAS],
            evidence: 0,
            proposal: None,
            acked: [0; MAX_REPLICAS],
            commit: 0,
            acked_at: [0; MAX_REPLICAS],
            lagging: 0,
        }
    }

    /// A replica left out of the initial view: it last accepted an older view of `members`
    /// and waits to rejoin.
    pub fn excluded(members: Mask) -> Replica {
        let old = View {
            ballot: Ballot::default(),
            members,
        };
        Replica {
            rejoining: true,
            lease_from: [0; MAX_REPLICAS],
            promise_to: [0; MAX_REPLICAS],
            ..Replica::new(old, 0)
        }
    }

    pub fn up(&self) -> bool {
        self.power == Power::Up
    }

    /// Its data directory was lost and it came back with `--rejoin` (core
    /// `Durable::lost`): it knows no view (accepted and established have no members), no
    /// promise, no log. It is restarted (quiet, rejoining) and a new incarnation. Its first
    /// acceptance as a member, with the proposer's whole log, ends the amnesia.
    pub fn lose_disk(&mut self, now: Time, quiet_for: Time) {
        let nothing = View::default();
        self.promised = Ballot::default();
        self.accepted = nothing;
        self.voted_only = false;
        self.log = Vec::new();
        self.established = nothing;
        self.restart(now, quiet_for);
    }

    /// It lost its disk and has accepted no view since (no real view is empty).
    pub fn knows_no_view(&self) -> bool {
        self.accepted.members == 0
    }

    /// Loses everything volatile and comes back as a new incarnation.
    pub fn restart(&mut self, now: Time, quiet_for: Time) {
        self.power = Power::Up;
        self.incarnation += 1;
        self.rejoining = true;
        self.quiet_until = now + quiet_for;
        self.lease_from = [0; MAX_REPLICAS];
        self.promise_to = [0; MAX_REPLICAS];
        self.heard = [0; MAX_REPLICAS];
        self.evidence = 0;
        self.proposal = None;
        self.acked = [0; MAX_REPLICAS];
        self.commit = 0;
        self.acked_at = [0; MAX_REPLICAS];
        self.lagging = 0;
    }
}

/// What a proposal changes, and so whom it asks in phase 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Rule 4: drop `proven` (crashed, evidence) and `silent` (past their lease).
    Exclude { silent: Mask, proven: Mask },
    /// Rule 7: the primary adds a returning replica.
    Rejoin(Id),
    /// Rule 8: everyone went down; the named proposer re-forms the highest view.
    Recover,
}

/// A proposal in phase 2, as its proposer keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Proposal {
    pub ballot: Ballot,
    pub kind: Kind,
    /// Replicas outside the view whose votes it counts (rule 4b).
    pub voters: Mask,
    /// The highest accepted-or-voted view phase 1 reported (its own included).
    pub base: View,
    pub view: View,
    /// Who answered phase 1 knowing no view (lost disk): never counted towards a majority.
    pub uncounted: Mask,
    /// Who accepted or voted so far, itself included.
    pub accepted: Mask,
    /// When it last sent the proposal, and how many copies it sent.
    pub last_sent: Time,
    pub sends: u8,
}

/// Messages in flight. The network is a set: a message may be delivered any number of
/// times, in any order, or never (loss, duplication, reordering, partitions).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Msg {
    /// Phase 2: to the new view's members (accept, with the log) and `voters` (vote).
    Propose {
        view: View,
        base: Ballot,
        voters: Mask,
        silent: Mask,
        proven: Mask,
        log: Vec<u8>,
        sent_at: Time,
    },
    /// An acceptance or vote, echoing the send time of the copy it answers (rule 3).
    Accepted {
        from: Id,
        /// The acceptor's incarnation when it answered.
        inc: u8,
        ballot: Ballot,
        echo: Time,
    },
}

/// A committed entry, as the ghost record keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Committed {
    pub index: u8,
    pub value: u8,
    pub ballot: Ballot,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub now: Time,
    pub replicas: Vec<Replica>,
    pub network: BTreeSet<Msg>,
    /// The next client value (values are unique, so a conflict shows).
    pub next_value: u8,
    pub crashes: u8,
    pub silent_crashes: u8,
    pub restarts: u8,
    /// Restarts on an empty disk (`--rejoin`), counted in `restarts` too.
    pub lost_disks: u8,
    /// Under the `R2` mutation: a duplicate process already said hello.
    pub duplicate_spoke: bool,
    pub last_crash_at: Time,
    /// `next_value` at the last crash: values from here on were appended after it.
    pub values_before_last_crash: u8,

    // Ghost: read only by the properties.
    pub committed: Vec<Committed>,
    /// Two different values were committed at one index.
    pub conflict: bool,
    /// A view was established whose member lacked a value committed in an earlier view.
    pub lost: bool,
    /// Crash-only schedule: with every other replica crashed, the survivor committed a value
    /// appended after the last crash, in the tick of that crash.
    pub fast_failover: bool,
    /// With a cut (`Bounds::cut`): a view without one side of the cut committed a value.
    pub cut_resolved: bool,
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let members: Vec<String> = ids(self.members).map(|i| i.to_string()).collect();
        write!(
            f,
            "b{}.{}{{{}}}",
            self.ballot.num,
            self.ballot.proposer,
            members.join(",")
        )
    }
}
