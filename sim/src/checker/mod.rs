//! The checkers run on every run. Each failure names its checker and says what went wrong.
//!
//! - [`agreement`]: committed entries agree on every replica (checked as they commit), and
//!   state digests agree at equal applied indexes.
//! - [`linearizability`]: the replies clients saw are the sequential model's replies at the
//!   committed log positions, each position lies between the call and the return.
//! - [`messages`]: no acknowledged message lost, doubled or reordered.
//! - [`liveness`]: when the protocol promises progress (checked by the engine in the busy
//!   phase); the quiet phase, where it is always promised, is judged by the engine, as is
//!   recovery.

pub mod agreement;
pub mod linearizability;
pub mod liveness;
pub mod messages;
pub mod model;

use chat_core::time::Instant;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checker {
    Linearizability,
    Messages,
    Agreement,
    Liveness,
    /// A replica could not start from a disk that was not deliberately corrupted, or the
    /// driver contract was broken.
    Recovery,
    /// A replica broke one of its own invariants (`Replica::check_invariants`).
    Invariants,
}

impl fmt::Display for Checker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Checker::Linearizability => "linearizability",
            Checker::Messages => "messages",
            Checker::Agreement => "agreement",
            Checker::Liveness => "liveness",
            Checker::Recovery => "recovery",
            Checker::Invariants => "invariants",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub checker: Checker,
    /// Simulated time at which it was found.
    pub at: Instant,
    pub detail: String,
}

impl Failure {
    pub fn new(checker: Checker, at: Instant, detail: impl Into<String>) -> Failure {
        Failure {
            checker,
            at,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} checker failed (at {:.3} s simulated): {}",
            self.checker,
            self.at.micros() as f64 / 1e6,
            self.detail
        )
    }
}

impl std::error::Error for Failure {}
