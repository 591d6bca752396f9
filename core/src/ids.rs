//! Identifiers shared by every layer.

/// A replica's index in the configuration: 0..replica_count.
pub type ReplicaId = u8;
/// A view (Raft's "term"): at most one primary per view.
pub type View = u64;
/// A position in the replicated log, starting at 1 (0 means "before the first entry").
pub type OpIndex = u64;
/// A client session, chosen at random by the client (128 bits: unguessable, so it doubles
/// as the session's bearer secret).
pub type ClientId = u128;
/// A client's request number: 1 for the session's first request (always `Op::OpenSession`),
/// then one more for each new request. A retry reuses the number.
pub type RequestNo = u64;
/// A chat message's id: unique and increasing over the whole service.
pub type MessageId = u64;
