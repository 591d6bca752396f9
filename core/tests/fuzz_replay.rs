//! Replays every fuzz target's committed corpus and regression inputs through the very same
//! functions libFuzzer runs (`fuzz/src/checks.rs`), on stable Rust, in every `cargo test`.

#[path = "../../fuzz/src/checks.rs"]
mod checks;

use std::path::Path;

#[test]
fn every_corpus_and_regression_input_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for (name, check) in checks::TARGETS {
        assert!(
            root.join("fuzz_targets")
                .join(format!("{name}.rs"))
                .exists(),
            "target {name} has no fuzz_targets/{name}.rs"
        );
        for folder in ["corpus", "regressions"] {
            let dir = root.join(folder).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| check(&data));
                assert!(outcome.is_ok(), "{name}: input {} fails", path.display());
                replayed += 1;
            }
        }
        // Inputs every target must survive, corpus or not.
        for data in [
            &b""[..],
            b"\0",
            b"\xff\xff\xff\xff",
            b"\x00\x00\x00\x01\x00",
        ] {
            check(data);
        }
    }
    println!("replayed {replayed} fuzz inputs");
}

/// Writes a few valid inputs per target into `fuzz/corpus/<target>/seed-*`, to start the
/// fuzzer from meaningful shapes: `cargo test -p chat-core --test fuzz_replay -- --ignored`.
#[test]
#[ignore = "writes files: run by hand before a fuzzing campaign"]
fn write_seed_corpus() {
    use chat_core::chat::{Limits, Message, Op, Reply};
    use chat_core::codec::{frame, record, snapshot};
    use chat_core::durable::{Entry, EntryBody, Record, Snapshot, SnapshotMeta};
    use chat_core::replica::view::Durable;
    use chat_core::replica::Body;
    use chat_core::service::{Request, Service};
    use chat_core::wire::{ClientToServer, Endpoint, Hello, PeerMessage, ServerToClient};

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let write = |target: &str, name: &str, bytes: Vec<u8>| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    };
    let max = frame::DEFAULT_MAX_FRAME;
    let request = |n, op| Request {
        client: 42,
        request: n,
        op,
    };
    let ops = [
        Op::OpenSession,
        Op::List {
            pattern: "a.*".into(),
        },
        Op::Create { user: "ann".into() },
        Op::Login { user: "ann".into() },
        Op::Send {
            to: "bob".into(),
            text: "hi | there".into(),
        },
        Op::Deliver,
        Op::Ack { ids: vec![1, 2] },
    ];
    for (i, op) in ops.iter().enumerate() {
        let msg = ClientToServer::Request(request(i as u64 + 1, op.clone()));
        write(
            "client_frame",
            &format!("request-{i}"),
            frame::encode(&msg, max).unwrap(),
        );
    }
    write(
        "client_frame",
        "attach",
        frame::encode(&ClientToServer::Attach { client: 7 }, max).unwrap(),
    );
    let message = Message {
        id: 3,
        from: "ann".into(),
        text: "hello".into(),
    };
    for (i, msg) in [
        ServerToClient::Push(message.clone()),
        ServerToClient::Redirect { primary: Some(1) },
        ServerToClient::Reply {
            request: 4,
            reply: Reply::Delivered {
                messages: vec![message],
                more: 0,
            },
        },
    ]
    .iter()
    .enumerate()
    {
        write(
            "server_frame",
            &i.to_string(),
            frame::encode(msg, max).unwrap(),
        );
    }
    for (i, hello) in [
        Hello::new(Endpoint::Client),
        Hello::new(Endpoint::Replica(2)),
    ]
    .iter()
    .enumerate()
    {
        write(
            "handshake",
            &i.to_string(),
            frame::encode(hello, max).unwrap(),
        );
    }
    let entries: Vec<Entry> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| Entry {
            index: i as u64 + 1,
            view: 1,
            body: EntryBody::Request(request(i as u64 + 1, op.clone())),
        })
        .collect();
    let message = |body| PeerMessage {
        life: Default::default(),
        body,
    };
    let peer = [
        message(Body::Append {
            view: 1,
            established: true,
            prev_index: 0,
            prev_view: 0,
            entries: entries.clone(),
            commit: 0,
        }),
        message(Body::Prepare {
            ballot: 2 << 8 | 1,
            excluding: Vec::new(),
        }),
        message(Body::SnapshotChunk {
            view: 1,
            meta: SnapshotMeta {
                last_index: 5,
                last_view: 1,
            },
            offset: 0,
            total_len: 3,
            data: vec![1, 2, 3],
        }),
    ];
    for (i, msg) in peer.iter().enumerate() {
        write(
            "peer_frame",
            &i.to_string(),
            frame::encode(msg, max).unwrap(),
        );
    }
    let mut log = Vec::new();
    record::encode(
        &Record::Protocol(Durable {
            promised: 1,
            ..Durable::initial(3)
        }),
        &mut log,
    );
    for e in &entries {
        record::encode(&Record::Entry(e.clone()), &mut log);
    }
    record::encode(&Record::TruncateFrom(5), &mut log);
    write("log_records", "log", log);
    let mut service = Service::new();
    for (i, e) in entries.iter().enumerate() {
        if let EntryBody::Request(r) = &e.body {
            service.apply(&Limits::default(), i as u64 + 1, r);
        }
    }
    let snap = Snapshot {
        meta: SnapshotMeta {
            last_index: 7,
            last_view: 1,
        },
        data: service.snapshot(),
    };
    write("snapshot", "state", snap.data.clone());
    write(
        "snapshot",
        "file-whole",
        snapshot::encode_to_vec(&snap, 1 << 20),
    );
    write(
        "snapshot",
        "file-chunks",
        snapshot::encode_to_vec(&snap, 16),
    );
    for (i, line) in [
        "0|a.*",
        "1|ann",
        "2|ann",
        "3|",
        "4|",
        "5|bob|hi | there",
        "6|",
        "quit",
        "help",
    ]
    .iter()
    .enumerate()
    {
        write("command_line", &i.to_string(), line.as_bytes().to_vec());
    }
    write(
        "config",
        "checked-in",
        include_bytes!("../../config.yaml").to_vec(),
    );
    use chat_core::peer_auth::{AuthFrame, AuthMessage};
    let mut auth = frame::encode(&AuthFrame::new(AuthMessage::Challenge([1; 32])), max).unwrap();
    auth.extend(frame::encode(&AuthFrame::new(AuthMessage::Proof([2; 32])), max).unwrap());
    write("peer_auth", "challenge-proof", auth);
}
