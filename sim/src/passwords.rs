//! Accounts with passwords in the simulator.
//!
//! A simulated client's call for `1|<user>|<password>` or `2|<user>|<password>` is an
//! `Op::CreateWithPassword` or `Op::LoginVerified` whose `password_hash` field holds the plain
//! password: the simulator's stand-in for `ClientToServer::WithPassword`. The engine plays
//! the primary's driver ([`drive`]): it hashes (tiny cost, salt from the run's generator) or
//! looks the account up on the replica and verifies, then hands the replica the op the real
//! server would order. The failure delay is not simulated; the uniform answer is.
//!
//! Every account with a password has the password [`right_password`] of its name, so the
//! end-of-run drain can log into all of them.

use chat_core::chat::{AccountLock, Op};
use chat_core::password::{self, HashCost};

/// A guess the workload makes that opens no account.
pub const WRONG_PASSWORD: &str = "not-the-password";

/// The password of every account named `user` that has one.
pub fn right_password(user: &str) -> String {
    format!("pw-{user}")
}

/// A client's call to create `user` with its password.
pub fn create_call(user: String) -> Op {
    let password_hash = right_password(&user);
    Op::CreateWithPassword {
        user,
        password_hash,
    }
}

/// A client's call to log into `user` with `password`.
pub fn login_call(user: String, password: String) -> Op {
    Op::LoginVerified {
        user,
        password_hash: password,
    }
}

/// What the primary's driver orders for a client's call; `None` if the call carries no
/// password. `lock` reads the account from the primary's state; `salt` is used for a create.
pub fn drive(call: &Op, lock: impl FnOnce(&str) -> AccountLock, salt: [u8; 16]) -> Option<Op> {
    match call {
        Op::CreateWithPassword {
            user,
            password_hash: password,
        } => Some(Op::CreateWithPassword {
            user: user.clone(),
            password_hash: password::hash(password, &salt, HashCost::TINY),
        }),
        Op::LoginVerified {
            user,
            password_hash: password,
        } => {
            let user = user.clone();
            Some(match lock(&user) {
                AccountLock::Open => Op::Login { user },
                AccountLock::Protected(phc) if password::verify(&phc, password) => {
                    Op::LoginVerified {
                        user,
                        password_hash: phc,
                    }
                }
                AccountLock::Protected(_) | AccountLock::Missing => Op::LoginRefused { user },
            })
        }
        _ => None,
    }
}

/// Whether `logged`, found in the log, is an op the driver may order for the client's
/// `call`: the call itself, or for a call with a password, an op for the same user whose
/// hash (if any) is a hash of the call's password.
pub fn ordered_for(call: &Op, logged: &Op) -> bool {
    match (call, logged) {
        (
            Op::CreateWithPassword {
                user,
                password_hash: password,
            },
            Op::CreateWithPassword {
                user: logged_user,
                password_hash,
            },
        )
        | (
            Op::LoginVerified {
                user,
                password_hash: password,
            },
            Op::LoginVerified {
                user: logged_user,
                password_hash,
            },
        ) => user == logged_user && password::verify(password_hash, password),
        (
            Op::LoginVerified { user, .. },
            Op::Login { user: logged_user } | Op::LoginRefused { user: logged_user },
        ) => user == logged_user,
        _ => call == logged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: [u8; 16] = [3; 16];

    fn protected(user: &str) -> AccountLock {
        AccountLock::Protected(password::hash(&right_password(user), &SALT, HashCost::TINY))
    }

    #[test]
    fn the_driver_orders_what_the_server_would() {
        let create = create_call("ann".into());
        let Some(ordered @ Op::CreateWithPassword { .. }) =
            drive(&create, |_| AccountLock::Missing, SALT)
        else {
            panic!("a create is ordered with the hash");
        };
        assert!(ordered_for(&create, &ordered));
        assert!(!format!("{ordered:?}").contains("pw-ann"));

        let right = login_call("ann".into(), right_password("ann"));
        let wrong = login_call("ann".into(), WRONG_PASSWORD.into());
        let verified = drive(&right, protected, SALT).unwrap();
        assert!(matches!(verified, Op::LoginVerified { .. }));
        assert!(ordered_for(&right, &verified));
        assert!(
            !ordered_for(&wrong, &verified),
            "the hash is not the guess's"
        );
        let refused = Op::LoginRefused { user: "ann".into() };
        assert_eq!(drive(&wrong, protected, SALT), Some(refused.clone()));
        assert_eq!(
            drive(&right, |_| AccountLock::Missing, SALT),
            Some(refused.clone())
        );
        assert_eq!(
            drive(&wrong, |_| AccountLock::Open, SALT),
            Some(Op::Login { user: "ann".into() })
        );
        assert!(ordered_for(&wrong, &refused));
        assert!(!ordered_for(
            &wrong,
            &Op::LoginRefused { user: "bob".into() }
        ));
    }

    #[test]
    fn other_calls_pass_through_unchanged() {
        let login = Op::Login { user: "ann".into() };
        assert_eq!(drive(&login, |_| unreachable!(), SALT), None);
        assert!(ordered_for(&login, &login));
        assert!(!ordered_for(&login, &Op::Login { user: "bob".into() }));
    }
}
