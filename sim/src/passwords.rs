//! Accounts with passwords in the simulator.
//!
//! A simulated client calls `1|<user>|<password>` or `2|<user>|<password>` as a
//! [`Ask::WithPassword`] and sends it as the real client does
//! (`ClientToServer::WithPassword`); the engine serves it with the core's decision
//! (`chat_core::password::request`), at the tiny hash cost. The failure delay is not
//! simulated; the uniform answer is.
//!
//! The checkers model these calls at the client's level: the password is in the history,
//! its hash in the state. [`ordered_for`] says which logged ops a driver may order for a
//! call; [`model_op`] is what the sequential model applies for it, deciding a login from
//! its own state at the op's log position, so a driver that orders the wrong op (from stale
//! state, say) is caught.
//!
//! Every account with a password has the password [`right_password`] of its name, so the
//! end-of-run drain can log into all of them.

use chat_core::chat::{AccountLock, Op};
use chat_core::client::Ask;
use chat_core::password::{self, Password};
use chat_core::wire::PasswordAction;

/// A guess the workload makes that opens no account.
pub const WRONG_PASSWORD: &str = "not-the-password";

/// The password of every account named `user` that has one.
pub fn right_password(user: &str) -> String {
    format!("pw-{user}")
}

/// A client's call to create `user` with its password.
pub fn create_call(user: String) -> Ask {
    let password = Password::new(right_password(&user));
    Ask::WithPassword {
        action: PasswordAction::Create,
        user,
        password,
    }
}

/// A client's call to log into `user` with `password`.
pub fn login_call(user: String, password: String) -> Ask {
    Ask::WithPassword {
        action: PasswordAction::Login,
        user,
        password: Password::new(password),
    }
}

/// Whether `logged`, found in the log, is an op a driver may order for the client's `call`:
/// the call's own op; for a create with a password, a create of the same user with a hash of
/// that password; for a login with a password, a verified or refused login of the same user
/// (whether it was the right one is the model's business: [`model_op`]).
pub fn ordered_for(call: &Ask, logged: &Op) -> bool {
    match (call, logged) {
        (Ask::Op(op), logged) => op == logged,
        (
            Ask::WithPassword {
                action: PasswordAction::Create,
                user,
                password,
            },
            Op::CreateWithPassword {
                user: logged_user,
                password_hash,
            },
        ) => user == logged_user && password::verify(password_hash, password.expose()),
        (
            Ask::WithPassword {
                action: PasswordAction::Login,
                user,
                ..
            },
            Op::LoginVerified {
                user: logged_user, ..
            }
            | Op::LoginRefused { user: logged_user },
        ) => user == logged_user,
        _ => false,
    }
}

/// What the sequential model applies for `call`, logged as `logged` (see [`ordered_for`]),
/// where the model's state has `lock` for the call's user: for a login with a password, the
/// right decision for that state (verified against the account's hash, or refused); for
/// anything else, the logged op.
pub fn model_op(call: &Ask, logged: &Op, lock: impl FnOnce(&str) -> AccountLock) -> Op {
    let Ask::WithPassword {
        action: PasswordAction::Login,
        user,
        password,
    } = call
    else {
        return logged.clone();
    };
    match lock(user) {
        AccountLock::Protected(phc) if password::verify(&phc, password.expose()) => {
            Op::LoginVerified {
                user: user.clone(),
                password_hash: phc,
            }
        }
        _ => Op::LoginRefused { user: user.clone() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::password::HashCost;

    const SALT: [u8; 16] = [3; 16];

    fn hash_of(user: &str) -> String {
        password::hash(&right_password(user), &SALT, HashCost::TINY)
    }

    #[test]
    fn a_create_is_ordered_with_a_hash_of_its_own_password() {
        let create = create_call("ann".into());
        let ordered = Op::CreateWithPassword {
            user: "ann".into(),
            password_hash: hash_of("ann"),
        };
        assert!(ordered_for(&create, &ordered));
        let other = Op::CreateWithPassword {
            user: "ann".into(),
            password_hash: hash_of("bob"),
        };
        assert!(!ordered_for(&create, &other), "not a hash of its password");
        assert!(!ordered_for(&create, &Op::Create { user: "ann".into() }));
        assert_eq!(model_op(&create, &ordered, |_| unreachable!()), ordered);
    }

    #[test]
    fn the_model_decides_a_login_from_its_own_state() {
        let right = login_call("ann".into(), right_password("ann"));
        let wrong = login_call("ann".into(), WRONG_PASSWORD.into());
        let refused = Op::LoginRefused { user: "ann".into() };
        let verified = Op::LoginVerified {
            user: "ann".into(),
            password_hash: hash_of("ann"),
        };
        for call in [&right, &wrong] {
            assert!(ordered_for(call, &refused));
            assert!(ordered_for(call, &verified));
            assert!(!ordered_for(call, &Op::Login { user: "ann".into() }));
            assert!(!ordered_for(call, &Op::LoginRefused { user: "bob".into() }));
        }
        let protected = |_: &str| AccountLock::Protected(hash_of("ann"));
        // Whatever the driver ordered, the model applies the right decision.
        assert_eq!(model_op(&right, &refused, protected), verified);
        assert_eq!(model_op(&wrong, &verified, protected), refused);
        assert_eq!(model_op(&right, &verified, |_| AccountLock::Open), refused);
        assert_eq!(
            model_op(&right, &verified, |_| AccountLock::Missing),
            refused
        );
    }

    #[test]
    fn other_calls_are_their_own_op() {
        let login = Op::Login { user: "ann".into() };
        let call = Ask::Op(login.clone());
        assert!(ordered_for(&call, &login));
        assert!(!ordered_for(&call, &Op::Login { user: "bob".into() }));
        assert_eq!(model_op(&call, &login, |_| unreachable!()), login);
    }
}
