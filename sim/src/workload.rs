//! Random chat operations over a small alphabet of names, so that names collide, logins take
//! accounts over and messages meet their recipients. Texts are unique within a run, so the
//! checkers can tell a message sent twice from two messages.

use crate::passwords::{create_call, login_call, right_password, WRONG_PASSWORD};
use chat_core::chat::Op;
use chat_core::client::Ask;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

const NAMES: [&str; 6] = ["ann", "bob", "cy", "dee", "eve", "fay"];

/// Names every check refuses, one per reason.
const BAD_NAMES: [&str; 3] = ["", "a b", "x|y"];

/// List patterns: valid ones, and ones the service must refuse.
const PATTERNS: [&str; 10] = [
    "",
    ".*",
    "a.*",
    "[b-d].*",
    "e.e",
    "(ann|bob)",
    "z+",
    "(",
    "[z-a]",
    "a{2,1}",
];

#[derive(Debug, Default)]
pub struct Workload {
    /// Texts made so far (they number the texts, which makes them unique).
    texts: u64,
}

impl Workload {
    pub fn new() -> Workload {
        Workload::default()
    }

    /// A random call for a client that believes it is logged in (or not). Pushed messages
    /// are acknowledged by the client session itself, as in the real client.
    pub fn next_op(&mut self, rng: &mut SmallRng, logged_in: bool) -> Ask {
        // Weights shift towards sending once logged in. The last two kinds are a create
        // and a login with a password (see `crate::passwords`).
        let weights: [u32; 9] = if logged_in {
            [4, 3, 6, 2, 1, 50, 12, 1, 2]
        } else {
            [6, 12, 28, 2, 1, 3, 2, 8, 20]
        };
        let total: u32 = weights.iter().sum();
        let mut pick = rng.gen_range(0..total);
        let mut kind = 0;
        while pick >= weights[kind] {
            pick -= weights[kind];
            kind += 1;
        }
        let op = match kind {
            0 => Op::List {
                pattern: self.pattern(rng),
            },
            1 => Op::Create {
                user: self.name(rng),
            },
            2 => Op::Login {
                user: self.name(rng),
            },
            3 => Op::Logout,
            4 => Op::Delete,
            5 => Op::Send {
                to: self.name(rng),
                text: self.text(rng),
            },
            6 => Op::Deliver,
            7 => return create_call(self.name(rng)),
            _ => {
                let user = self.name(rng);
                let password = if rng.gen_bool(0.7) {
                    right_password(&user)
                } else {
                    WRONG_PASSWORD.to_owned()
                };
                return login_call(user, password);
            }
        };
        Ask::Op(op)
    }

    fn name(&self, rng: &mut SmallRng) -> String {
        if rng.gen_bool(0.03) {
            if rng.gen_bool(0.25) {
                return "n".repeat(40); // over max_name_bytes
            }
            return BAD_NAMES.choose(rng).expect("not empty").to_string();
        }
        NAMES.choose(rng).expect("not empty").to_string()
    }

    fn pattern(&self, rng: &mut SmallRng) -> String {
        if rng.gen_bool(0.05) {
            return "a".repeat(300); // over max_pattern_bytes
        }
        PATTERNS.choose(rng).expect("not empty").to_string()
    }

    /// A fresh text; sometimes one the service refuses (empty or too long).
    fn text(&mut self, rng: &mut SmallRng) -> String {
        self.texts += 1;
        match rng.gen_range(0..100) {
            0 => String::new(),
            1 => format!("t{}-{}", self.texts, "x".repeat(1000)),
            _ => format!("t{}", self.texts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::BTreeSet;

    #[test]
    fn every_operation_appears_and_texts_are_unique() {
        let mut rng = SmallRng::seed_from_u64(9);
        let mut workload = Workload::new();
        let mut kinds = BTreeSet::new();
        let mut texts = BTreeSet::new();
        for i in 0..5000 {
            let op = workload.next_op(&mut rng, i % 2 == 0);
            let kind = match &op {
                Ask::Op(op) => format!("{op:?}"),
                Ask::WithPassword { action, .. } => format!("{action:?}WithPassword"),
            };
            kinds.insert(kind.split([' ', '{']).next().unwrap().to_string());
            if let Ask::Op(Op::Send { text, .. }) = &op {
                if !text.is_empty() {
                    assert!(texts.insert(text.clone()), "texts repeat");
                }
            }
        }
        assert_eq!(
            kinds.len(),
            9,
            "List, Create, Login, Logout, Delete, Send, Deliver, and with a password: \
             CreateWithPassword, LoginWithPassword (the session makes the Acks)"
        );
    }
}
