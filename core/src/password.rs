//! Account passwords: the plain password as a value that never shows itself, and the salted
//! slow hash (Argon2id, as a PHC string) that is all the service ever stores.
//!
//! Pure: the salt comes in as an argument, drawn by the driver from its own randomness. The
//! work is slow on purpose, so drivers run it away from their event loop.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroize;

pub mod request;

/// A plain password on its way from the user to the hashing. `Debug` shows `<redacted>`, so
/// it cannot leak through a log line of a value that holds it, and its bytes are wiped when
/// it is dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    pub fn new(password: String) -> Password {
        Password(password)
    }

    /// The plain text, for hashing and verifying only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Overwrites the text's bytes with zeros (what dropping does).
    fn wipe(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        self.wipe();
    }
}

/// How much work one hash takes. Stored in each hash, so changing it affects new hashes only;
/// verification always uses the cost the hash was made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashCost {
    /// Memory per hash, in KiB (at least 8).
    pub memory_kib: u32,
    /// Passes over that memory (at least 1).
    pub iterations: u32,
}

impl HashCost {
    /// The cheapest cost Argon2 allows: for tests and the simulator only.
    pub const TINY: HashCost = HashCost {
        memory_kib: Params::MIN_M_COST,
        iterations: Params::MIN_T_COST,
    };

    fn params(self) -> Params {
        Params::new(
            self.memory_kib.max(Params::MIN_M_COST),
            self.iterations.max(Params::MIN_T_COST),
            1,
            None,
        )
        .expect("costs are clamped to Argon2's minimums")
    }
}

/// Argon2's recommended defaults (OWASP's choice for Argon2id: 19 MiB, 2 passes).
impl Default for HashCost {
    fn default() -> Self {
        HashCost {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
        }
    }
}

/// Hashes `password` with `salt` (16 fresh random bytes per account) at `cost`; the result
/// is a PHC string (`$argon2id$v=19$m=...,t=...,p=1$<salt>$<hash>`) that carries everything
/// [`verify`] needs. Costs below Argon2's minimums are raised to them.
pub fn hash(password: &str, salt: &[u8; 16], cost: HashCost) -> String {
    let salt = SaltString::encode_b64(salt).expect("16 bytes is a valid salt length");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, cost.params())
        .hash_password(password.as_bytes(), &salt)
        .expect("in-memory hashing with valid parameters cannot fail")
        .to_string()
}

/// Whether `password` is the one `phc` was made from. A string that is not a valid Argon2
/// PHC hash matches no password. The comparison of the hash bytes takes constant time.
pub fn verify(phc: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: [u8; 16] = [7; 16];

    #[test]
    fn the_right_password_verifies_and_others_do_not() {
        let phc = hash("hunter2", &SALT, HashCost::TINY);
        assert!(phc.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{phc}");
        assert!(verify(&phc, "hunter2"));
        assert!(!verify(&phc, "hunter3"));
        assert!(!verify(&phc, ""));
        assert!(!phc.contains("hunter2"));
    }

    #[test]
    fn salt_and_cost_change_the_hash_and_verification_follows_them() {
        let one = hash("pw", &SALT, HashCost::TINY);
        let other_salt = hash("pw", &[8; 16], HashCost::TINY);
        let cost = HashCost {
            memory_kib: 16,
            iterations: 2,
        };
        let costlier = hash("pw", &SALT, cost);
        assert_ne!(one, other_salt);
        assert_ne!(one, costlier);
        assert!(costlier.contains("m=16,t=2"));
        for phc in [&one, &other_salt, &costlier] {
            assert!(verify(phc, "pw"));
        }
        assert_eq!(
            hash("pw", &SALT, HashCost::TINY),
            one,
            "deterministic given the salt"
        );
    }

    #[test]
    fn costs_below_the_minimum_are_raised() {
        let zero = HashCost {
            memory_kib: 0,
            iterations: 0,
        };
        assert_eq!(hash("pw", &SALT, zero), hash("pw", &SALT, HashCost::TINY));
    }

    #[test]
    fn garbage_hashes_match_nothing() {
        for phc in [
            "",
            "pw",
            "$argon2id$",
            "$md5$xyz",
            "$argon2id$v=19$m=8,t=1,p=1$AAAA$",
        ] {
            assert!(!verify(phc, "pw"), "{phc:?}");
            assert!(!verify(phc, ""), "{phc:?}");
        }
    }

    #[test]
    fn default_cost_is_argon2s_recommendation() {
        assert_eq!(
            HashCost::default(),
            HashCost {
                memory_kib: 19 * 1024,
                iterations: 2
            }
        );
    }

    #[test]
    fn a_password_never_shows_itself() {
        let password = Password::new("hunter2".into());
        assert_eq!(format!("{password:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(password.clone())), "Some(<redacted>)");
        assert_eq!(password.expose(), "hunter2");
        // On the wire it is the plain string (the connection is what carries it).
        let bytes = postcard::to_stdvec(&password).unwrap();
        assert_eq!(bytes, postcard::to_stdvec("hunter2").unwrap());
        assert_eq!(postcard::from_bytes::<Password>(&bytes).unwrap(), password);
    }

    #[test]
    fn wiping_clears_the_text() {
        let mut password = Password::new("hunter2".into());
        password.wipe();
        assert_eq!(password.expose(), "");
    }
}
