//! Property tests of the byte codecs: frames round-trip and survive hostile input; record
//! streams round-trip and tell a cut-short write from damage.

use chat_core::chat::{ChatError, Message, Op, Reply};
use chat_core::codec::frame::{self, FrameDecoder, FrameError};
use chat_core::codec::handshake::{check_hello, HandshakeError};
use chat_core::codec::record::{self, End, HEADER_BYTES, TRAILER_BYTES};
use chat_core::durable::{Entry, EntryBody, Record, SnapshotMeta};
use chat_core::peer_auth::RemoveOrder;
use chat_core::replica::view::{Durable, Exclusion, Incarnation, Members, ViewDef};
use chat_core::replica::{Body, PeerMessage, Report, Role, Status};
use chat_core::service::Request;
use chat_core::time::Instant;
use chat_core::wire::{ClientToServer, Endpoint, Hello, ServerToClient, MAGIC, PROTOCOL_VERSION};
use proptest::prelude::*;

const MAX: u32 = frame::DEFAULT_MAX_FRAME;

fn text() -> impl Strategy<Value = String> {
    any::<String>().prop_map(|s| s.chars().take(40).collect())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::OpenSession),
        text().prop_map(|pattern| Op::List { pattern }),
        text().prop_map(|user| Op::Create { user }),
        text().prop_map(|user| Op::Login { user }),
        Just(Op::Logout),
        Just(Op::Delete),
        (text(), text()).prop_map(|(to, text)| Op::Send { to, text }),
        Just(Op::Deliver),
        prop::collection::vec(any::<u64>(), 0..5).prop_map(|ids| Op::Ack { ids }),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (any::<u128>(), any::<u64>(), op()).prop_map(|(client, request, op)| Request {
        client,
        request,
        op,
    })
}

fn message() -> impl Strategy<Value = Message> {
    (any::<u64>(), text(), text()).prop_map(|(id, from, text)| Message { id, from, text })
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        Just(Reply::SessionOpened),
        (prop::collection::vec(text(), 0..4), any::<u64>())
            .prop_map(|(names, total)| Reply::Accounts { names, total }),
        (text(), any::<u64>()).prop_map(|(user, waiting)| Reply::LoggedIn { user, waiting }),
        any::<u64>().prop_map(|id| Reply::Sent { id }),
        (prop::collection::vec(message(), 0..4), any::<u64>())
            .prop_map(|(messages, more)| Reply::Delivered { messages, more }),
        text().prop_map(|p| Reply::Error(ChatError::BadPattern(p))),
        any::<u32>().prop_map(|max| Reply::Error(ChatError::TextTooLong { max })),
        Just(Reply::Error(ChatError::NotLoggedIn)),
    ]
}

fn status() -> impl Strategy<Value = Status> {
    (
        any::<u8>(),
        prop_oneof![
            Just(Role::Backup),
            Just(Role::Candidate),
            Just(Role::Primary)
        ],
        any::<u64>(),
        any::<Option<u8>>(),
        any::<[u64; 3]>(),
    )
        .prop_map(
            |(id, role, view, primary, [commit, last_index, log_start])| Status {
                id,
                role,
                view,
                primary,
                commit,
                last_index,
                log_start,
                members: vec![0, id],
                established: view % 2 == 0,
                rejoining: false,
                leases: vec![id],
                waiting_for: vec![],
            },
        )
}

fn client_to_server() -> impl Strategy<Value = ClientToServer> {
    prop_oneof![
        any::<u128>().prop_map(|client| ClientToServer::Attach { client }),
        request().prop_map(ClientToServer::Request),
        Just(ClientToServer::Status),
        (any::<(u8, u8, u64)>(), any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(
            |((server, replica, unix_secs), nonce, tag)| ClientToServer::Remove(RemoveOrder {
                server,
                replica,
                unix_secs,
                nonce,
                tag,
            })
        ),
    ]
}

fn server_to_client() -> impl Strategy<Value = ServerToClient> {
    prop_oneof![
        (any::<u64>(), reply())
            .prop_map(|(request, reply)| ServerToClient::Reply { request, reply }),
        any::<Option<u8>>().prop_map(|primary| ServerToClient::Redirect { primary }),
        message().prop_map(ServerToClient::Push),
        Just(ServerToClient::LoggedOut),
        status().prop_map(ServerToClient::Status),
        (any::<bool>(), ".{0,40}")
            .prop_map(|(taken, message)| ServerToClient::RemoveAnswer { taken, message }),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        any::<u64>(),
        any::<u64>(),
        prop_oneof![
            Just(EntryBody::Noop),
            request().prop_map(EntryBody::Request),
            any::<u64>().prop_map(|t| EntryBody::Time(chat_core::time::Instant(t))),
        ],
    )
        .prop_map(|(index, view, body)| Entry { index, view, body })
}

fn view_def() -> impl Strategy<Value = ViewDef> {
    (any::<u64>(), any::<u16>()).prop_map(|(ballot, m)| ViewDef {
        ballot,
        members: Members(m),
    })
}

fn report() -> impl Strategy<Value = Report> {
    (
        any::<[u64; 2]>(),
        view_def(),
        view_def(),
        any::<[bool; 3]>(),
    )
        .prop_map(
            |([promised, log_end], accepted, established, [vote, rejoining, quiet])| Report {
                promised,
                accepted,
                vote,
                established,
                rejoining,
                quiet,
                log_end,
            },
        )
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (
            any::<[u64; 4]>(),
            any::<bool>(),
            prop::collection::vec(entry(), 0..4)
        )
            .prop_map(
                |([view, prev_index, prev_view, commit], established, entries)| Body::Append {
                    view,
                    established,
                    prev_index,
                    prev_view,
                    entries,
                    commit,
                }
            ),
        (any::<[u64; 3]>(), any::<bool>()).prop_map(|([view, index, prev_index], ok)| {
            Body::AppendReply {
                view,
                ok,
                index,
                prev_index,
            }
        }),
        (any::<u64>(), any::<u8>(), any::<[u64; 2]>()).prop_map(|(ballot, m, [c, id])| {
            Body::Prepare {
                ballot,
                excluding: vec![
                    (m, Exclusion::Silent),
                    (m, Exclusion::Crashed(Incarnation { counter: c, id })),
                ],
            }
        }),
        (any::<u64>(), any::<bool>(), report()).prop_map(|(ballot, granted, report)| {
            Body::Promise {
                ballot,
                granted,
                report,
            }
        }),
        (view_def(), any::<[u64; 5]>()).prop_map(
            |(view, [base, log_end, log_end_view, sent_at, m])| Body::Propose {
                view,
                base,
                voters: vec![m as u8],
                excluded: vec![(m as u8, Exclusion::Silent)],
                log_end,
                log_end_view,
                sent_at: Instant(sent_at),
            }
        ),
        any::<[u64; 2]>().prop_map(|[ballot, echo]| Body::Accepted {
            ballot,
            echo: Instant(echo)
        }),
        (any::<u64>(), any::<u16>()).prop_map(|(t, lagging)| Body::Heartbeat {
            sent_at: Instant(t),
            lagging: Members(lagging),
        }),
        any::<u64>().prop_map(|t| Body::HeartbeatOk { echo: Instant(t) }),
        (report(), any::<bool>()).prop_map(|(report, answer)| Body::Hello { report, answer }),
        (any::<[u64; 5]>(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(
            |([view, last_index, last_view, offset, total_len], data)| Body::SnapshotChunk {
                view,
                meta: SnapshotMeta {
                    last_index,
                    last_view
                },
                offset,
                total_len,
                data,
            }
        ),
        any::<[u64; 3]>().prop_map(|[view, last_index, offset]| Body::SnapshotReply {
            view,
            last_index,
            offset
        }),
    ]
}

fn peer_message() -> impl Strategy<Value = PeerMessage> {
    (any::<[u64; 2]>(), body()).prop_map(|([counter, id], body)| PeerMessage {
        life: Incarnation { counter, id },
        body,
    })
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        any::<u32>(),
        any::<u16>(),
        prop_oneof![
            Just(Endpoint::Client),
            any::<u8>().prop_map(Endpoint::Replica)
        ],
    )
        .prop_map(|(magic, version, from)| Hello {
            magic,
            version,
            from,
        })
}

fn durable_record() -> impl Strategy<Value = Record> {
    prop_oneof![
        any::<u64>().prop_map(|view| Record::Protocol(Durable {
            promised: view,
            ..Durable::initial(3)
        })),
        entry().prop_map(Record::Entry),
        any::<u64>().prop_map(Record::TruncateFrom),
    ]
}

/// Encodes `values` as frames, feeds them to a decoder in pieces cut at `cuts`, and returns
/// what comes out.
fn frame_round_trip<T>(values: &[T], cuts: &[usize]) -> Vec<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let mut stream = Vec::new();
    for v in values {
        stream.extend(frame::encode(v, MAX).expect("small frame"));
    }
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(stream.len());
    points.sort_unstable();
    let mut decoder = FrameDecoder::new(MAX);
    let mut out = Vec::new();
    let mut from = 0;
    for to in points {
        decoder.push(&stream[from..to]);
        from = to;
        while let Some(v) = decoder.next().expect("valid frame") {
            out.push(v);
        }
    }
    assert!(!decoder.has_partial());
    out
}

/// Encodes records and returns the stream and each record's start offset.
fn record_stream(records: &[Record]) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = Vec::new();
    let mut starts = Vec::new();
    for r in records {
        starts.push(bytes.len());
        record::encode(r, &mut bytes);
    }
    (bytes, starts)
}

fn values(decoded: &record::Decoded<Record>) -> Vec<Record> {
    decoded.records.iter().map(|(_, r)| r.clone()).collect()
}

proptest! {
    #[test]
    fn client_frames_round_trip(
        v in prop::collection::vec(client_to_server(), 0..6),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        prop_assert_eq!(frame_round_trip(&v, &cuts), v);
    }

    #[test]
    fn server_frames_round_trip(
        v in prop::collection::vec(server_to_client(), 0..6),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        prop_assert_eq!(frame_round_trip(&v, &cuts), v);
    }

    #[test]
    fn peer_frames_round_trip(
        v in prop::collection::vec(peer_message(), 0..6),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        prop_assert_eq!(frame_round_trip(&v, &cuts), v);
    }

    #[test]
    fn hello_frames_round_trip_and_are_checked(h in hello()) {
        prop_assert_eq!(frame_round_trip(&[h], &[]), vec![h]);
        let expected = if h.magic != MAGIC {
            Err(HandshakeError::WrongMagic { got: h.magic })
        } else if h.version != PROTOCOL_VERSION {
            Err(HandshakeError::WrongVersion { got: h.version, want: PROTOCOL_VERSION })
        } else {
            Ok(())
        };
        prop_assert_eq!(check_hello(&h), expected);
    }

    /// Whatever arrives, the decoder returns frames or typed errors, never panics, and holds
    /// no more than one unfinished frame plus one push.
    #[test]
    fn arbitrary_bytes_never_panic(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8),
        max in 0u32..48,
    ) {
        let mut decoder = FrameDecoder::new(max);
        for chunk in &chunks {
            decoder.push(chunk);
            prop_assert!(decoder.buffered() <= max as usize + 4 + chunk.len());
            loop {
                match decoder.next::<ClientToServer>() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(FrameError::TooLarge { len, max: m }) => {
                        prop_assert!(len > u64::from(m));
                        prop_assert_eq!(decoder.buffered(), 0);
                        break;
                    }
                    Err(_) => {}
                }
            }
            prop_assert!(decoder.buffered() <= max as usize + 4);
        }
    }

    /// An oversized length prefix is refused as soon as the four prefix bytes are in, and
    /// the decoder stays failed.
    #[test]
    fn oversized_prefix_is_refused_at_once(max in 0u32..1_000_000, excess in 1u32..1000, split in 0usize..5) {
        let len = max + excess;
        let prefix = len.to_be_bytes();
        let mut decoder = FrameDecoder::new(max);
        decoder.push(&prefix[..split.min(4)]);
        if split < 4 {
            prop_assert_eq!(decoder.next::<Hello>(), Ok(None));
            decoder.push(&prefix[split..]);
        }
        let err = FrameError::TooLarge { len: len.into(), max };
        prop_assert_eq!(decoder.next::<Hello>(), Err(err.clone()));
        decoder.push(&[0; 16]);
        prop_assert_eq!(decoder.next::<Hello>(), Err(err));
        prop_assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn oversized_values_are_not_encoded(data in prop::collection::vec(any::<u8>(), 1..200)) {
        let len = frame::encode(&data, MAX).expect("fits").len() - 4;
        let max = u32::try_from(len - 1).expect("small");
        prop_assert_eq!(
            frame::encode(&data, max),
            Err(FrameError::TooLarge { len: len as u64, max })
        );
    }

    /// Every accepted frame re-encodes to a frame that decodes to the same value. Not always
    /// to the same bytes: postcard accepts an overlong varint (`[128, 0]` for 0; the saved
    /// regression), which is harmless here, since nothing signs, hashes or compares a frame's
    /// bytes (peer authentication MACs a transcript of its own).
    #[test]
    fn decoded_frames_reencode_to_the_same_value(payload in prop::collection::vec(any::<u8>(), 0..40)) {
        let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&payload);
        let mut decoder = FrameDecoder::new(MAX);
        decoder.push(&bytes);
        if let Ok(Some(value)) = decoder.next::<PeerMessage>() {
            let again = frame::encode(&value, MAX).expect("fits");
            prop_assert!(again.len() <= bytes.len());
            let mut decoder = FrameDecoder::new(MAX);
            decoder.push(&again);
            prop_assert_eq!(decoder.next::<PeerMessage>(), Ok(Some(value)));
        }
    }

    #[test]
    fn records_round_trip(records in prop::collection::vec(durable_record(), 0..10)) {
        let (bytes, starts) = record_stream(&records);
        let decoded = record::decode_all::<Record>(&bytes);
        prop_assert_eq!(&decoded.end, &End::Clean);
        let offsets: Vec<u64> = decoded.records.iter().map(|(o, _)| *o).collect();
        prop_assert_eq!(offsets, starts.iter().map(|&s| s as u64).collect::<Vec<_>>());
        prop_assert_eq!(values(&decoded), records);
    }

    /// A stream cut anywhere yields exactly the records wholly before the cut, then a clean
    /// end (cut on a boundary) or a torn tail at the first missing record; never corruption.
    #[test]
    fn truncation_gives_a_prefix_and_a_torn_tail(
        records in prop::collection::vec(durable_record(), 1..10),
        cut in any::<prop::sample::Index>(),
    ) {
        let (bytes, starts) = record_stream(&records);
        let cut = cut.index(bytes.len() + 1);
        let decoded = record::decode_all::<Record>(&bytes[..cut]);
        let whole = starts.iter().skip(1).chain([&bytes.len()]).filter(|&&end| end <= cut).count();
        prop_assert_eq!(values(&decoded), records[..whole].to_vec());
        let expected = if whole == records.len() || starts[whole] == cut {
            End::Clean
        } else {
            End::TornTail { offset: starts[whole] as u64 }
        };
        prop_assert_eq!(decoded.end, expected);
    }

    /// A log written over zeros, crashed while a batch was being written: whichever of the
    /// batch's sectors reached the disk, every record synced before it is read back and
    /// nothing is read that was not written. When the sectors that landed are a prefix (the
    /// usual order), the end is a torn tail unless the cut fell inside a header or a checksum;
    /// otherwise it may read as corruption (start-up stops), never as a clean end.
    #[test]
    fn lost_sectors_of_an_unsynced_batch_never_cost_a_synced_record(
        synced in prop::collection::vec(durable_record(), 0..6),
        batch in prop::collection::vec(durable_record(), 1..6),
        sector in prop::sample::select(vec![16usize, 64, 512]),
        cut in any::<prop::sample::Index>(),
        lost in prop::collection::vec(any::<bool>(), 1..64),
        in_order in any::<bool>(),
    ) {
        let (mut bytes, synced_starts) = record_stream(&synced);
        let synced_len = bytes.len();
        let (batch_bytes, batch_starts) = record_stream(&batch);
        bytes.extend_from_slice(&batch_bytes);
        let written = bytes.len();
        bytes.resize(written + 2 * sector, 0);
        // The sectors holding batch bytes; the first may also hold synced bytes, which stay.
        let (first, last) = (synced_len / sector, (written - 1) / sector);
        let cut_sector = first + cut.index(last - first + 2);
        for s in first..=last {
            let gone = if in_order { s >= cut_sector } else { lost[s % lost.len()] };
            if gone {
                let from = (s * sector).max(synced_len);
                bytes[from..((s + 1) * sector).min(written)].fill(0);
            }
        }
        let decoded = record::decode_all::<Record>(&bytes);
        let all: Vec<Record> = synced.iter().chain(&batch).cloned().collect();
        let got = values(&decoded);
        prop_assert!(got.len() >= synced.len(), "a synced record was lost: {:?}", decoded.end);
        prop_assert_eq!(&got[..], &all[..got.len()]);
        let starts: Vec<usize> = synced_starts
            .iter()
            .copied()
            .chain(batch_starts.iter().map(|s| s + synced_len))
            .chain([written])
            .collect();
        let cut_at = (cut_sector * sector).max(synced_len);
        let inside_a_check = starts.windows(2).any(|w| {
            (w[0] < cut_at && cut_at < w[0] + HEADER_BYTES)
                || (w[1] - TRAILER_BYTES < cut_at && cut_at < w[1])
        });
        match decoded.end {
            End::Clean => prop_assert!(false, "zeros after the log read as a clean end"),
            End::TornTail { .. } => {}
            End::Corrupt { .. } => prop_assert!(
                !in_order || inside_a_check,
                "a cut in order, between checks, read as corruption"
            ),
        }
    }

    /// Synced bytes that read back as zeros (a lost write), with non-zero bytes after them:
    /// the records before are kept, and the end is corruption, never a torn tail.
    #[test]
    fn zeroed_bytes_before_the_end_are_corruption(
        records in prop::collection::vec(durable_record(), 1..8),
        a in any::<prop::sample::Index>(),
        b in any::<prop::sample::Index>(),
    ) {
        let (mut bytes, starts) = record_stream(&records);
        // Zeros over [from, to), with a non-zero byte left at or after `to`.
        let last = bytes.iter().rposition(|&b| b != 0).expect("records are never all zero");
        let (from, to) = {
            let (x, y) = (a.index(last + 1), b.index(last + 1));
            (x.min(y), x.max(y).max(x.min(y) + 1).min(last))
        };
        prop_assume!(from < to && bytes[from..to].iter().any(|&b| b != 0));
        bytes[from..to].fill(0);
        let decoded = record::decode_all::<Record>(&bytes);
        let before = starts.iter().skip(1).chain([&bytes.len()]).filter(|&&end| end <= from).count();
        prop_assert!(values(&decoded).len() >= before);
        prop_assert_eq!(&values(&decoded)[..], &records[..values(&decoded).len()]);
        prop_assert!(matches!(decoded.end, End::Corrupt { .. }), "{:?}", decoded.end);
    }

    /// Damage to one byte of a record keeps the records before it and stops there, as
    /// corruption: a complete record never reads as a torn tail, wherever it is.
    #[test]
    fn flipped_byte_stops_at_its_record(
        records in prop::collection::vec(durable_record(), 1..8),
        at in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let (mut bytes, starts) = record_stream(&records);
        let at = at.index(bytes.len());
        bytes[at] ^= mask;
        let k = starts.iter().rposition(|&s| s <= at).expect("first record starts at 0");
        let start = starts[k] as u64;
        let decoded = record::decode_all::<Record>(&bytes);
        prop_assert_eq!(values(&decoded), records[..k].to_vec());
        match decoded.end {
            End::Corrupt { offset, .. } => prop_assert_eq!(offset, start),
            End::TornTail { .. } => prop_assert!(false, "damage read as a torn tail"),
            End::Clean => prop_assert!(false, "damage went unnoticed"),
        }
    }
}

#[test]
fn trailing_bytes_in_a_frame_are_refused() {
    let mut bytes = frame::encode(&Hello::new(Endpoint::Client), MAX).expect("fits");
    bytes.push(0);
    let len = u32::try_from(bytes.len() - 4).expect("small");
    bytes[..4].copy_from_slice(&len.to_be_bytes());
    let mut decoder = FrameDecoder::new(MAX);
    decoder.push(&bytes);
    assert_eq!(
        decoder.next::<Hello>(),
        Err(FrameError::TrailingBytes { extra: 1 })
    );
    // The bad frame was consumed: the stream continues with the next one.
    decoder.push(&frame::encode(&Hello::new(Endpoint::Replica(2)), MAX).expect("fits"));
    assert_eq!(decoder.next(), Ok(Some(Hello::new(Endpoint::Replica(2)))));
}

#[test]
fn partial_frames_are_reported() {
    let bytes = frame::encode(&ClientToServer::Status, MAX).expect("fits");
    let mut decoder = FrameDecoder::new(MAX);
    assert!(!decoder.has_partial());
    decoder.push(&bytes[..2]);
    assert_eq!(decoder.next::<ClientToServer>(), Ok(None));
    assert!(decoder.has_partial());
    decoder.push(&bytes[2..]);
    assert_eq!(decoder.next(), Ok(Some(ClientToServer::Status)));
    assert!(!decoder.has_partial());
}

#[test]
fn record_is_length_length_check_body_then_checksum() {
    let mut bytes = Vec::new();
    record::encode(&Record::TruncateFrom(3), &mut bytes);
    let body = &bytes[HEADER_BYTES..bytes.len() - TRAILER_BYTES];
    assert_eq!(bytes[..4], (body.len() as u32).to_le_bytes());
    assert_eq!(bytes[4..8], crc32c::crc32c(&bytes[..4]).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..4]), body);
    assert_eq!(bytes[bytes.len() - TRAILER_BYTES..], crc.to_le_bytes());
}

/// A plaintext reader that meets TLS (an alert or a handshake record) can say so.
#[test]
fn a_tls_record_read_as_a_frame_is_recognised() {
    let read = |bytes: &[u8]| {
        let mut decoder = FrameDecoder::new(1 << 20);
        decoder.push(bytes);
        decoder.next::<Hello>()
    };
    for record in [
        [0x15, 0x03, 0x03, 0x00, 0x02],
        [0x16, 0x03, 0x01, 0x02, 0x00],
    ] {
        assert!(
            read(&record).is_err_and(|e| e.is_tls_record()),
            "{record:?}"
        );
    }
    assert!(read(&[0x7f, 0x00, 0x00, 0x00]).is_err_and(|e| !e.is_tls_record()));
}
