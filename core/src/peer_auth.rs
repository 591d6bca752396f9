//! Replicas prove to each other that they hold the cluster's shared secret, by a
//! challenge-response MAC run on a peer connection right after the `Hello` exchange:
//!
//! ```text
//! dialer                                   acceptor
//!   Hello, Challenge(dialer nonce)   ->
//!                                    <-    Hello, Challenge(acceptor nonce)
//!   Proof(as dialer)                 ->    (verified before anything else is read)
//!                                    <-    Proof(as acceptor)
//!   (verified before anything is sent)
//! ```
//!
//! A proof is HMAC-SHA256 over a transcript that names the prover's role, both replica ids
//! and both nonces, so it cannot be replayed on another connection (the verifier's own fresh
//! nonce is in it), reflected back at its maker (the role is in it), or moved to another pair
//! of replicas. The acceptor, which anyone can reach, computes nothing with the secret until
//! the dialer has proven itself.
//!
//! This module is pure: nonces come in as arguments, and the driver sends and receives the
//! [`AuthFrame`]s. It authenticates the connection's start only; the frames after it carry
//! no MAC, so an attacker able to take over an established TCP stream is not stopped here.

use crate::ids::ReplicaId;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use zeroize::Zeroizing;

/// Bytes of a nonce and of a proof.
pub const NONCE_BYTES: usize = 32;
/// The shortest secret accepted.
pub const MIN_SECRET_BYTES: usize = 32;
/// "AUTH" in ASCII: opens every handshake frame, so that a replica expecting `PeerMessage`s
/// (one configured without a secret) refuses the frame instead of misreading it.
pub const AUTH_MAGIC: u32 = 0x4155_5448;
/// Separates these MACs from any other use of the same secret.
const LABEL: &[u8] = b"chat-peer-auth v1";
/// Separates [`ClusterSecret::identity_tag`] from any other use of the same secret.
const IDENTITY_LABEL: &[u8] = b"chat-data-dir-identity v1";
/// Bytes of [`ClusterSecret::identity_tag`] (twice as many hex digits).
pub const IDENTITY_TAG_BYTES: usize = 16;

/// A value each side draws fresh (and unpredictable) for every connection.
pub type Nonce = [u8; NONCE_BYTES];
/// An HMAC-SHA256 tag.
pub type Tag = [u8; NONCE_BYTES];

/// The cluster's shared secret. Its bytes never reach a log line: `Debug` prints
/// `<redacted>`, and the memory is wiped when it is dropped.
#[derive(Clone)]
pub struct ClusterSecret(Zeroizing<Vec<u8>>);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("it holds fewer than {MIN_SECRET_BYTES} bytes")]
    TooShort,
}

impl ClusterSecret {
    /// The secret in a secret file's contents: every byte except trailing ASCII whitespace
    /// (so that a newline added by an editor changes nothing).
    pub fn from_file_contents(bytes: Vec<u8>) -> Result<ClusterSecret, SecretError> {
        let mut bytes = Zeroizing::new(bytes);
        let len = bytes
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |last| last + 1);
        bytes.truncate(len);
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort);
        }
        Ok(ClusterSecret(bytes))
    }

    /// A public name for the cluster this secret belongs to: the first
    /// [`IDENTITY_TAG_BYTES`] bytes of HMAC-SHA256 of a fixed label, keyed with the secret, in
    /// lowercase hex. A data directory records it (`IDENTITY`) so that a replica started on
    /// another cluster's directory is refused. It reveals nothing of the secret (HMAC is a
    /// pseudo-random function of its key) and, its label being its own, matches no proof or
    /// signature made with the same secret.
    pub fn identity_tag(&self) -> String {
        let mut mac = self.mac();
        mac.update(IDENTITY_LABEL);
        let tag = mac.finalize().into_bytes();
        tag[..IDENTITY_TAG_BYTES]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Which side of the connection made a proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prover {
    Dialer,
    Acceptor,
}

impl Prover {
    fn other(self) -> Prover {
        match self {
            Prover::Dialer => Prover::Acceptor,
            Prover::Acceptor => Prover::Dialer,
        }
    }
}

/// What both sides of one connection know once the challenges are exchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transcript {
    pub dialer: ReplicaId,
    pub acceptor: ReplicaId,
    pub dialer_nonce: Nonce,
    pub acceptor_nonce: Nonce,
}

impl Transcript {
    /// Fixed-width fields after a fixed label: no two transcripts encode alike.
    fn feed(&self, prover: Prover, mac: &mut Hmac<Sha256>) {
        mac.update(LABEL);
        mac.update(&[match prover {
            Prover::Dialer => b'D',
            Prover::Acceptor => b'A',
        }]);
        mac.update(&[self.dialer, self.acceptor]);
        mac.update(&self.dialer_nonce);
        mac.update(&self.acceptor_nonce);
    }
}

/// `prover`'s proof that it holds `secret`, for this transcript.
pub fn proof(secret: &ClusterSecret, prover: Prover, transcript: &Transcript) -> Tag {
    let mut mac = secret.mac();
    transcript.feed(prover, &mut mac);
    mac.finalize().into_bytes().into()
}

/// Whether `tag` is `prover`'s proof for this transcript (compared in constant time).
pub fn verify(secret: &ClusterSecret, prover: Prover, transcript: &Transcript, tag: &[u8]) -> bool {
    let mut mac = secret.mac();
    transcript.feed(prover, &mut mac);
    mac.verify_slice(tag).is_ok()
}

/// One frame of the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthFrame {
    /// Always [`AUTH_MAGIC`].
    pub magic: u32,
    pub message: AuthMessage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthMessage {
    Challenge(Nonce),
    Proof(Tag),
}

impl AuthFrame {
    pub fn new(message: AuthMessage) -> AuthFrame {
        AuthFrame {
            magic: AUTH_MAGIC,
            message,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("not a peer authentication frame (is cluster_secret_file set on both replicas?)")]
    NotAuth,
    #[error("expected a {expected}, got a {got}")]
    Unexpected {
        expected: &'static str,
        got: &'static str,
    },
    #[error("the proof of holding the cluster secret is wrong")]
    BadProof,
}

/// What to do after a handshake frame was accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this (if anything) and wait for the next frame.
    Continue(Option<AuthFrame>),
    /// The other side proved itself: send this (if anything); from now on the connection
    /// carries `PeerMessage`s.
    Authenticated(Option<AuthFrame>),
}

/// One side's progress through the handshake. Holds no secret (nonces are public).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    me: Prover,
    dialer: ReplicaId,
    acceptor: ReplicaId,
    my_nonce: Nonce,
    /// Once the other side's challenge came.
    their_nonce: Option<Nonce>,
}

impl Handshake {
    /// Starts `me`'s side of a connection from `dialer` to `acceptor`; returns the challenge
    /// to send (the dialer sends it right after its `Hello`, the acceptor right after its
    /// answering `Hello`). `nonce` must be fresh and unpredictable.
    pub fn start(
        me: Prover,
        dialer: ReplicaId,
        acceptor: ReplicaId,
        nonce: Nonce,
    ) -> (Handshake, AuthFrame) {
        let handshake = Handshake {
            me,
            dialer,
            acceptor,
            my_nonce: nonce,
            their_nonce: None,
        };
        (handshake, AuthFrame::new(AuthMessage::Challenge(nonce)))
    }

    /// Takes the other side's next frame. An error means the connection must be closed.
    pub fn on_frame(
        &mut self,
        secret: &ClusterSecret,
        frame: AuthFrame,
    ) -> Result<Step, AuthError> {
        if frame.magic != AUTH_MAGIC {
            return Err(AuthError::NotAuth);
        }
        match (self.their_nonce, frame.message) {
            (None, AuthMessage::Challenge(nonce)) => {
                self.their_nonce = Some(nonce);
                // The dialer proves first; the acceptor waits for that proof.
                let answer = (self.me == Prover::Dialer).then(|| self.my_proof(secret));
                Ok(Step::Continue(answer))
            }
            (Some(_), AuthMessage::Proof(tag)) => {
                if !verify(secret, self.me.other(), &self.transcript(), &tag) {
                    return Err(AuthError::BadProof);
                }
                let answer = (self.me == Prover::Acceptor).then(|| self.my_proof(secret));
                Ok(Step::Authenticated(answer))
            }
            (None, AuthMessage::Proof(_)) => Err(AuthError::Unexpected {
                expected: "challenge",
                got: "proof",
            }),
            (Some(_), AuthMessage::Challenge(_)) => Err(AuthError::Unexpected {
                expected: "proof",
                got: "second challenge",
            }),
        }
    }

    fn my_proof(&self, secret: &ClusterSecret) -> AuthFrame {
        AuthFrame::new(AuthMessage::Proof(proof(
            secret,
            self.me,
            &self.transcript(),
        )))
    }

    /// Called only once the other side's nonce is known.
    fn transcript(&self) -> Transcript {
        let theirs = self.their_nonce.expect("the other side's challenge came");
        let (dialer_nonce, acceptor_nonce) = match self.me {
            Prover::Dialer => (self.my_nonce, theirs),
            Prover::Acceptor => (theirs, self.my_nonce),
        };
        Transcript {
            dialer: self.dialer,
            acceptor: self.acceptor,
            dialer_nonce,
            acceptor_nonce,
        }
    }
}

/// Separates the operator's removal orders from the peer handshake's MACs.
const REMOVE_LABEL: &[u8] = b"chat-admin-remove v1";

/// How far an order's signing time may be from the receiver's wall clock.
pub const REMOVE_ORDER_FRESH_SECS: u64 = 60;

/// `chat-admin remove <replica>`, sent to replica `server` on its client port: the operator
/// declares `replica`'s host gone for good. It is signed with the cluster secret (only the
/// operator and the replicas hold it) and names the server and the time, so that it cannot be
/// moved to another replica or used more than a minute later (within that minute a replay
/// only repeats the same order); the nonce makes every order's tag different.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveOrder {
    pub server: ReplicaId,
    pub replica: ReplicaId,
    pub unix_secs: u64,
    pub nonce: Nonce,
    pub tag: Tag,
}

/// Why a replica does not take a [`RemoveOrder`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderRefused {
    #[error("the order is for replica {0}")]
    OtherServer(ReplicaId),
    #[error("the order was signed {0} s away from this replica's clock (more than {REMOVE_ORDER_FRESH_SECS} s)")]
    Stale(u64),
    #[error("the order's signature does not match this cluster's secret")]
    BadSignature,
}

impl RemoveOrder {
    pub fn sign(
        secret: &ClusterSecret,
        server: ReplicaId,
        replica: ReplicaId,
        unix_secs: u64,
        nonce: Nonce,
    ) -> RemoveOrder {
        let mut order = RemoveOrder {
            server,
            replica,
            unix_secs,
            nonce,
            tag: [0; NONCE_BYTES],
        };
        order.tag = order.mac(secret).finalize().into_bytes().into();
        order
    }

    /// Checks the order as replica `me` whose wall clock reads `now_unix_secs`.
    pub fn verify(
        &self,
        secret: &ClusterSecret,
        me: ReplicaId,
        now_unix_secs: u64,
    ) -> Result<(), OrderRefused> {
        if self.server != me {
            return Err(OrderRefused::OtherServer(self.server));
        }
        let apart = now_unix_secs.abs_diff(self.unix_secs);
        if apart > REMOVE_ORDER_FRESH_SECS {
            return Err(OrderRefused::Stale(apart));
        }
        self.mac(secret)
            .verify_slice(&self.tag)
            .map_err(|_| OrderRefused::BadSignature)
    }

    fn mac(&self, secret: &ClusterSecret) -> Hmac<Sha256> {
        let mut mac = secret.mac();
        mac.update(REMOVE_LABEL);
        mac.update(&[self.server, self.replica]);
        mac.update(&self.unix_secs.to_le_bytes());
        mac.update(&self.nonce);
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::frame;
    use crate::replica::PeerMessage;

    fn secret(fill: u8) -> ClusterSecret {
        ClusterSecret::from_file_contents(vec![fill; MIN_SECRET_BYTES]).unwrap()
    }

    fn transcript() -> Transcript {
        Transcript {
            dialer: 1,
            acceptor: 2,
            dialer_nonce: [0xd1; NONCE_BYTES],
            acceptor_nonce: [0xa2; NONCE_BYTES],
        }
    }

    #[test]
    fn a_proof_verifies_with_the_same_secret_role_and_transcript() {
        let (s, t) = (secret(7), transcript());
        for role in [Prover::Dialer, Prover::Acceptor] {
            assert!(verify(&s, role, &t, &proof(&s, role, &t)));
        }
    }

    #[test]
    fn a_wrong_secret_fails() {
        let t = transcript();
        let tag = proof(&secret(8), Prover::Dialer, &t);
        assert!(!verify(&secret(7), Prover::Dialer, &t, &tag));
    }

    #[test]
    fn a_proof_reflected_with_the_other_role_fails() {
        let (s, t) = (secret(7), transcript());
        let tag = proof(&s, Prover::Acceptor, &t);
        assert!(!verify(&s, Prover::Dialer, &t, &tag));
    }

    #[test]
    fn a_proof_replayed_with_another_nonce_or_ids_fails() {
        let (s, t) = (secret(7), transcript());
        let tag = proof(&s, Prover::Dialer, &t);
        let changed = [
            Transcript {
                acceptor_nonce: [0xa3; NONCE_BYTES],
                ..t
            },
            Transcript {
                dialer_nonce: [0xd2; NONCE_BYTES],
                ..t
            },
            Transcript { dialer: 0, ..t },
            Transcript { acceptor: 0, ..t },
            Transcript {
                dialer: t.acceptor,
                acceptor: t.dialer,
                ..t
            },
        ];
        for other in changed {
            assert!(!verify(&s, Prover::Dialer, &other, &tag), "{other:?}");
        }
    }

    #[test]
    fn a_truncated_tag_fails() {
        let (s, t) = (secret(7), transcript());
        let tag = proof(&s, Prover::Dialer, &t);
        assert!(!verify(&s, Prover::Dialer, &t, &tag[..16]));
        assert!(!verify(&s, Prover::Dialer, &t, &[]));
    }

    /// Runs a whole handshake between two sides with their own secrets; returns whether
    /// each side ended authenticated (the dialer's answer, the acceptor's answer).
    fn run(dialer_secret: &ClusterSecret, acceptor_secret: &ClusterSecret) -> (bool, bool) {
        let (mut d, d_challenge) = Handshake::start(Prover::Dialer, 1, 2, [1; NONCE_BYTES]);
        let (mut a, a_challenge) = Handshake::start(Prover::Acceptor, 1, 2, [2; NONCE_BYTES]);
        assert_eq!(
            a.on_frame(acceptor_secret, d_challenge),
            Ok(Step::Continue(None))
        );
        let Ok(Step::Continue(Some(d_proof))) = d.on_frame(dialer_secret, a_challenge) else {
            panic!("the dialer answers a challenge with its proof");
        };
        let Ok(Step::Authenticated(Some(a_proof))) = a.on_frame(acceptor_secret, d_proof) else {
            return (false, false);
        };
        (
            d.on_frame(dialer_secret, a_proof) == Ok(Step::Authenticated(None)),
            true,
        )
    }

    #[test]
    fn both_sides_authenticate_with_the_same_secret() {
        assert_eq!(run(&secret(7), &secret(7)), (true, true));
    }

    #[test]
    fn the_acceptor_refuses_a_dialer_with_another_secret_and_proves_nothing() {
        assert_eq!(run(&secret(8), &secret(7)), (false, false));
    }

    #[test]
    fn a_replayed_proof_fails_against_a_fresh_acceptor_nonce() {
        let s = secret(7);
        let (mut d, d_challenge) = Handshake::start(Prover::Dialer, 1, 2, [1; NONCE_BYTES]);
        let (_, a_challenge) = Handshake::start(Prover::Acceptor, 1, 2, [2; NONCE_BYTES]);
        let Ok(Step::Continue(Some(recorded))) = d.on_frame(&s, a_challenge) else {
            panic!("a proof");
        };
        // A second connection: the same dialer nonce, a fresh acceptor nonce.
        let (mut a, _) = Handshake::start(Prover::Acceptor, 1, 2, [3; NONCE_BYTES]);
        a.on_frame(&s, d_challenge).unwrap();
        assert_eq!(a.on_frame(&s, recorded), Err(AuthError::BadProof));
    }

    #[test]
    fn frames_out_of_order_or_without_the_magic_are_refused() {
        let s = secret(7);
        let (mut a, _) = Handshake::start(Prover::Acceptor, 1, 2, [2; NONCE_BYTES]);
        let early = AuthFrame::new(AuthMessage::Proof([0; NONCE_BYTES]));
        assert!(matches!(
            a.on_frame(&s, early),
            Err(AuthError::Unexpected { .. })
        ));
        let challenge = AuthFrame::new(AuthMessage::Challenge([1; NONCE_BYTES]));
        a.on_frame(&s, challenge).unwrap();
        assert!(matches!(
            a.on_frame(&s, challenge),
            Err(AuthError::Unexpected { .. })
        ));
        let unmarked = AuthFrame {
            magic: 0,
            ..challenge
        };
        assert_eq!(a.on_frame(&s, unmarked), Err(AuthError::NotAuth));
    }

    #[test]
    fn an_auth_frame_never_decodes_as_a_peer_message() {
        for message in [
            AuthMessage::Challenge([0; NONCE_BYTES]),
            AuthMessage::Proof([0xff; NONCE_BYTES]),
        ] {
            let bytes = frame::encode(&AuthFrame::new(message), 1 << 20).unwrap();
            let mut decoder = frame::FrameDecoder::new(1 << 20);
            decoder.push(&bytes);
            assert!(decoder.next::<PeerMessage>().is_err(), "{message:?}");
        }
    }

    #[test]
    fn a_secret_file_is_trimmed_and_must_be_long_enough() {
        let mut text = vec![b'x'; MIN_SECRET_BYTES];
        text.extend_from_slice(b"\r\n");
        let trimmed = ClusterSecret::from_file_contents(text).unwrap();
        let t = transcript();
        let tag = proof(&secret(b'x'), Prover::Dialer, &t);
        assert!(verify(&trimmed, Prover::Dialer, &t, &tag));
        let mut short = vec![b'x'; MIN_SECRET_BYTES - 1];
        short.extend_from_slice(b"   \n");
        assert_eq!(
            ClusterSecret::from_file_contents(short).unwrap_err(),
            SecretError::TooShort
        );
    }

    #[test]
    fn the_identity_tag_is_fixed_by_the_secret_alone() {
        // HMAC-SHA256(key 32 × 0x07, "chat-data-dir-identity v1"), first 16 bytes, from
        // Python's hmac: every data directory records it, so it must never change.
        assert_eq!(secret(7).identity_tag(), "ceaba8b7dfb0a6020f8979704648a2b1");
        assert_eq!(secret(7).identity_tag(), secret(7).identity_tag());
        assert_ne!(secret(7).identity_tag(), secret(8).identity_tag());
        let tag = secret(b'x').identity_tag();
        assert_eq!(tag.len(), 2 * IDENTITY_TAG_BYTES);
        assert!(tag
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let shown = format!("{:?}", secret(b'q'));
        assert_eq!(shown, "<redacted>");
    }

    #[test]
    fn a_remove_order_holds_only_for_its_server_its_time_and_the_secret() {
        let s = secret(7);
        let order = RemoveOrder::sign(&s, 0, 2, 1_000, [5; NONCE_BYTES]);
        assert_eq!(order.verify(&s, 0, 1_030), Ok(()));
        assert_eq!(
            order.verify(&s, 1, 1_000),
            Err(OrderRefused::OtherServer(0))
        );
        assert_eq!(order.verify(&s, 0, 1_061), Err(OrderRefused::Stale(61)));
        assert_eq!(
            order.verify(&secret(8), 0, 1_000),
            Err(OrderRefused::BadSignature)
        );
        let moved = RemoveOrder {
            replica: 1,
            ..order
        };
        assert_eq!(moved.verify(&s, 0, 1_000), Err(OrderRefused::BadSignature));
    }
}
