//! The body of every fuzz target: one function per decoder that reads outside bytes.
//!
//! The same functions run under libFuzzer (`fuzz/fuzz_targets/*.rs`) and, on stable Rust, in
//! `cargo test` (`core/tests/fuzz_replay.rs` includes this file), which replays every committed
//! corpus and regression input. Each function panics only on a real bug: a decoder that
//! panicked, or a property that does not hold.

use chat_core::codec::frame::{self, FrameDecoder};
use chat_core::codec::snapshot as snapshot_file;
use chat_core::codec::{handshake, record};
use chat_core::command;
use chat_core::config::Config;
use chat_core::durable::{Record, Recovered};
use chat_core::peer_auth::{AuthFrame, ClusterSecret, Handshake, Prover, Step};
use chat_core::service::Service;
use chat_core::wire::{ClientToServer, Hello, PeerMessage, ServerToClient};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// Small frames keep the fuzzer on the interesting paths (the limit check included).
const MAX_FRAME: u32 = 64 * 1024;

/// Feeds `data` to a frame decoder in pieces whose sizes come from the data itself; every
/// value decoded must survive encode -> decode unchanged.
fn frames<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    let split = data.first().map_or(1, |&b| usize::from(b % 16) + 1);
    for piece in data.chunks(split) {
        decoder.push(piece);
        loop {
            match decoder.next::<T>() {
                Ok(Some(value)) => {
                    let bytes = frame::encode(&value, MAX_FRAME).expect("decoded value re-encodes");
                    let mut again = FrameDecoder::new(MAX_FRAME);
                    again.push(&bytes);
                    let back = again.next::<T>().expect("re-decodes").expect("whole frame");
                    assert_eq!(back, value, "decode -> encode -> decode changed the value");
                }
                Ok(None) => break,
                // A bad frame ends the connection: stop, as the server does.
                Err(_) => return,
            }
        }
    }
}

pub fn client_frame(data: &[u8]) {
    frames::<ClientToServer>(data);
}

pub fn server_frame(data: &[u8]) {
    frames::<ServerToClient>(data);
}

pub fn peer_frame(data: &[u8]) {
    frames::<PeerMessage>(data);
}

/// The `Hello` that opens every connection: decode, then check magic and version.
pub fn handshake(data: &[u8]) {
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    decoder.push(data);
    if let Ok(Some(hello)) = decoder.next::<Hello>() {
        let _ = handshake::check_hello(&hello);
    }
}

/// Log records: the valid prefix re-encodes to records that decode to the same values, and
/// replaying them never panics.
pub fn log_records(data: &[u8]) {
    let decoded = record::decode_all::<Record>(data);
    let values: Vec<Record> = decoded.records.into_iter().map(|(_, r)| r).collect();
    let mut bytes = Vec::new();
    for value in &values {
        record::encode(value, &mut bytes);
    }
    let again = record::decode_all::<Record>(&bytes);
    assert_eq!(again.end, record::End::Clean);
    let back: Vec<Record> = again.records.into_iter().map(|(_, r)| r).collect();
    assert_eq!(back, values);
    let _ = Recovered::replay(None, values);
}

/// Snapshot files (a header record, chunk records, an end record with the checksum of the
/// whole): a file that decodes re-encodes, in chunks of any size, to a file that decodes equal.
/// The input is also tried as the service state inside a snapshot: a state that restores must
/// snapshot back to bytes that restore equal.
pub fn snapshot(data: &[u8]) {
    if let Ok(snap) = snapshot_file::decode(data) {
        let chunk = usize::from(data[data.len() / 2] % 64) + 1;
        let again = snapshot_file::decode(&snapshot_file::encode_to_vec(&snap, chunk))
            .expect("a decoded snapshot re-encodes to a valid file");
        assert_eq!(again, snap);
        restores_equal(&snap.data);
    }
    restores_equal(data);
}

fn restores_equal(state: &[u8]) {
    if let Ok(service) = Service::restore(state) {
        let again = Service::restore(&service.snapshot()).expect("own snapshot restores");
        assert_eq!(again, service);
    }
}

/// The client command line.
pub fn command_line(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    if let Ok(command::Command::Op(op)) = command::parse(&line) {
        // Whatever parses must be describable and encodable as a request.
        let _ = format!("{op:?}");
    }
}

/// `config.yaml` loading.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(config) = Config::parse(text) {
            assert!(!config.replicas.is_empty());
        }
    }
}

/// The peer authentication handshake, from the acceptor's side: whatever a stranger sends, it
/// never gets authenticated without the secret.
pub fn peer_auth(data: &[u8]) {
    let secret = ClusterSecret::from_file_contents(vec![7; 32]).expect("32 bytes");
    let (mut acceptor, _) = Handshake::start(Prover::Acceptor, 1, 0, [9; 32]);
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    decoder.push(data);
    while let Ok(Some(frame)) = decoder.next::<AuthFrame>() {
        match acceptor.on_frame(&secret, frame) {
            Ok(Step::Continue(_)) => {}
            Ok(Step::Authenticated(_)) => panic!("authenticated without the secret"),
            Err(_) => return,
        }
    }
}

/// A fuzz target's body.
pub type Check = fn(&[u8]);

/// Every target, by name (the names of `fuzz/fuzz_targets/*.rs` and of the corpus folders).
pub const TARGETS: &[(&str, Check)] = &[
    ("peer_auth", peer_auth),
    ("client_frame", client_frame),
    ("server_frame", server_frame),
    ("peer_frame", peer_frame),
    ("handshake", handshake),
    ("log_records", log_records),
    ("snapshot", snapshot),
    ("command_line", command_line),
    ("config", config),
];
