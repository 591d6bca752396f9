//! The one decision every driver takes for a create or login that carries a password
//! (`ClientToServer::WithPassword`): hash or verify the password, then which operation to
//! order. The server runs the slow work on its worker pool, the simulator inline; both ask
//! [`PasswordRequest::next`] what to do until it says to order something.
//!
//! The plain password stays in the request and its slow work; what is ordered carries the
//! hash only. A login decides from the account as the primary's applied state has it, and
//! only under the read rule ([`Replica::account_lock`]): each `next` reads the account
//! again, keeps a verification only if it was made against that very hash, and the driver
//! orders what `next` returns in the same turn. So the account at the op's log position is
//! the account it was decided against. Every failed login (wrong password, no such account,
//! an account without a password) is ordered as `LoginRefused`, answered `BadCredentials`.

use super::{hash, verify, HashCost, Password};
use crate::chat::{AccountLock, Op};
use crate::ids::{ClientId, RequestNo};
use crate::replica::{Output, Replica, Role};
use crate::service::Request;
use crate::wire::PasswordAction;

/// A create or login with a password, at the primary.
#[derive(Debug)]
pub struct PasswordRequest {
    pub client: ClientId,
    pub request: RequestNo,
    pub action: PasswordAction,
    pub user: String,
    password: Password,
    found: Option<Found>,
}

/// What the slow work found so far.
#[derive(Debug)]
enum Found {
    Hashed(String),
    /// Verification against this hash was asked for.
    Verifying(String),
    Verified {
        phc: String,
        right: bool,
    },
}

/// The slow part of a password request, run away from the driver's event loop.
#[derive(Debug)]
pub enum Work {
    /// Hash a new account's password.
    Hash {
        password: Password,
        salt: [u8; 16],
        cost: HashCost,
    },
    /// Check a password against an account's hash (at the cost stored in it).
    Verify { phc: String, password: Password },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The PHC string of the hash.
    Hashed(String),
    Verified(bool),
}

impl Work {
    pub fn run(self) -> Outcome {
        match self {
            Work::Hash {
                password,
                salt,
                cost,
            } => Outcome::Hashed(hash(password.expose(), &salt, cost)),
            Work::Verify { phc, password } => Outcome::Verified(verify(&phc, password.expose())),
        }
    }
}

/// What the driver does next with a [`PasswordRequest`].
#[derive(Debug)]
pub enum Next {
    /// This replica is not the primary: carry out this output (the replica's redirect) and
    /// forget the request.
    Redirect(Output),
    /// The applied state may be stale for this login (the read rule): ask again once the
    /// replica has applied more.
    Wait,
    /// Run this away from the event loop, hand its outcome to [`PasswordRequest::found`],
    /// then ask again.
    Run(Work),
    /// Order this now, in the same turn (`Input::Client`). `refused`: a failed login,
    /// answered `BadCredentials`; a driver may hold it back first, then ask again (the
    /// account may have changed meanwhile).
    Order { request: Request, refused: bool },
}

impl PasswordRequest {
    pub fn new(
        client: ClientId,
        request: RequestNo,
        action: PasswordAction,
        user: String,
        password: Password,
    ) -> PasswordRequest {
        PasswordRequest {
            client,
            request,
            action,
            user,
            password,
            found: None,
        }
    }

    /// What to do next, on `replica`. `salt` (16 fresh random bytes) is drawn only when a new
    /// password is to be hashed, at `cost`.
    pub fn next(
        &mut self,
        replica: &Replica,
        salt: impl FnOnce() -> [u8; 16],
        cost: HashCost,
    ) -> Next {
        let status = replica.status();
        if status.role != Role::Primary {
            return Next::Redirect(Output::Redirect {
                client: self.client,
                primary: status.primary,
            });
        }
        let user = self.user.clone();
        let op = match self.action {
            PasswordAction::Create => match &self.found {
                Some(Found::Hashed(hash)) => Op::CreateWithPassword {
                    user,
                    password_hash: hash.clone(),
                },
                _ => {
                    let password = self.password.clone();
                    return Next::Run(Work::Hash {
                        password,
                        salt: salt(),
                        cost,
                    });
                }
            },
            PasswordAction::Login => match replica.account_lock(&self.user) {
                None => return Next::Wait,
                Some(AccountLock::Missing | AccountLock::Open) => Op::LoginRefused { user },
                Some(AccountLock::Protected(phc)) => match &self.found {
                    Some(Found::Verified {
                        phc: against,
                        right,
                    }) if *against == phc => {
                        if *right {
                            Op::LoginVerified {
                                user,
                                password_hash: phc,
                            }
                        } else {
                            Op::LoginRefused { user }
                        }
                    }
                    _ => {
                        self.found = Some(Found::Verifying(phc.clone()));
                        let password = self.password.clone();
                        return Next::Run(Work::Verify { phc, password });
                    }
                },
            },
        };
        let refused = matches!(op, Op::LoginRefused { .. });
        let request = Request {
            client: self.client,
            request: self.request,
            op,
        };
        Next::Order { request, refused }
    }

    /// The outcome of the work the last [`Next::Run`] asked for.
    pub fn found(&mut self, outcome: Outcome) {
        self.found = match (outcome, self.found.take()) {
            (Outcome::Hashed(hash), _) => Some(Found::Hashed(hash)),
            (Outcome::Verified(right), Some(Found::Verifying(phc))) => {
                Some(Found::Verified { phc, right })
            }
            (Outcome::Verified(_), _) => None,
        };
    }
}
