//! Greedy clients against a real replica run in this process: a flood of session openings
//! must not log out users who keep chatting, idle connections must not hold the slots, and a
//! client whose idle connection was closed carries on with its session.
//!
//! The flood runs 2 s here; the full 10 s run is
//! `FLOOD_SECS=10 cargo test -p chat-net --test sessions_and_slots -- --nocapture`.

mod support;

use chat_core::chat::{Op, Reply};
use chat_core::codec::frame::{self, FrameDecoder};
use chat_core::ids::ClientId;
use chat_core::service::Request;
use chat_core::wire::{ClientToServer, Endpoint, Hello, ServerToClient};
use chat_net::client::{Client, ClientOptions, Incoming};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::{Cluster, MAX_FRAME};

/// A client connection from `source` (127.0.0.x), through its `Hello` exchange.
fn greeted(source: [u8; 4], port: u16) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket
        .connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_nodelay(true).unwrap();
    send(&mut stream, &Hello::new(Endpoint::Client));
    let _: Hello = recv(
        &mut stream,
        &mut FrameDecoder::new(MAX_FRAME),
        Duration::from_secs(20),
    )
    .expect("the server's hello");
    stream
}

fn send<T: serde::Serialize>(stream: &mut TcpStream, value: &T) {
    stream
        .write_all(&frame::encode(value, MAX_FRAME).unwrap())
        .unwrap();
}

fn recv<T: serde::de::DeserializeOwned>(
    stream: &mut TcpStream,
    decoder: &mut FrameDecoder,
    within: Duration,
) -> Result<T, String> {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        if let Some(value) = decoder.next().map_err(|e| e.to_string())? {
            return Ok(value);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("nothing in time".into());
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return Err("closed".into()),
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn open_session(client: ClientId) -> ClientToServer {
    ClientToServer::Request(Request {
        client,
        request: 1,
        op: Op::OpenSession,
    })
}

fn client_options() -> ClientOptions {
    ClientOptions {
        reply_timeout: Duration::from_millis(500),
        ..ClientOptions::default()
    }
}

#[test]
fn with_every_slot_held_by_idle_connections_a_new_client_is_served_within_a_second() {
    let mut cluster = Cluster::configure(
        1,
        true,
        "",
        "  max_connections: 1024\n  max_connections_per_address: 256\n",
    );
    cluster.run(1);
    let port = cluster.config.replicas[0].client_port;
    // Wait for the replica to be primary.
    drop(Client::connect_with(&cluster.config, client_options()).unwrap());
    let started = Instant::now();
    let idle: Vec<TcpStream> = (1..=4u8)
        .flat_map(|last| (0..256).map(move |_| greeted([127, 0, 0, last], port)))
        .collect();
    println!(
        "{} idle connections from 4 addresses in {} ms",
        idle.len(),
        started.elapsed().as_millis()
    );

    let asked = Instant::now();
    let mut stream = greeted([127, 0, 0, 5], port);
    send(&mut stream, &open_session(7));
    let mut decoder = FrameDecoder::new(MAX_FRAME);
    let reply: ServerToClient = recv(&mut stream, &mut decoder, Duration::from_secs(5)).unwrap();
    let served = asked.elapsed();
    assert_eq!(
        reply,
        ServerToClient::Reply {
            request: 1,
            reply: Reply::SessionOpened
        }
    );
    println!("new client served in {} ms", served.as_millis());
    assert!(served < Duration::from_secs(1), "served in {served:?}");
    // The idlest (the first opened) made room.
    let mut first = idle.into_iter().next().unwrap();
    let closed = recv::<ServerToClient>(&mut first, &mut decoder, Duration::from_secs(5));
    assert_eq!(closed, Err("closed".to_string()));
    cluster.stop();
}

#[test]
fn an_idle_connection_is_closed_and_its_client_carries_on_with_its_session() {
    let mut cluster = Cluster::configure(1, true, "", "  client_idle_timeout_ms: 500\n");
    cluster.run(1);
    let port = cluster.config.replicas[0].client_port;
    let (ann, incoming) = Client::connect_with(&cluster.config, client_options()).unwrap();
    assert_eq!(
        ann.request(Op::Create { user: "ann".into() }),
        Ok(Reply::Created)
    );
    assert!(matches!(
        ann.request(Op::Login { user: "ann".into() }),
        Ok(Reply::LoggedIn { .. })
    ));

    let silent = Instant::now();
    let mut raw = greeted([127, 0, 0, 1], port);
    let closed = recv::<ServerToClient>(
        &mut raw,
        &mut FrameDecoder::new(MAX_FRAME),
        Duration::from_secs(10),
    );
    assert_eq!(closed, Err("closed".to_string()));
    let after = silent.elapsed();
    assert!(
        after >= Duration::from_millis(450),
        "closed after {after:?}"
    );

    // Ann's connection was closed for idling at least twice meanwhile: same session,
    // still logged in, and pushes still reach her.
    thread::sleep(Duration::from_millis(1500));
    assert!(matches!(
        ann.request(Op::Send {
            to: "ann".into(),
            text: "still here".into()
        }),
        Ok(Reply::Sent { .. })
    ));
    let pushed = incoming.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        matches!(&pushed, Incoming::Message(m) if m.text == "still here"),
        "{pushed:?}"
    );
    drop(ann);
    cluster.stop();
}

/// 20 users log in and chat while one client opens sessions as fast as it can from 8
/// threads, in a client table of 100 rows: without the rate limits and the eviction order,
/// the flood would push every user out of the table within a second.
#[test]
fn a_flood_of_session_openings_does_not_log_out_users_who_keep_chatting() {
    let flood_for = Duration::from_secs(
        std::env::var("FLOOD_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2),
    );
    let mut cluster = Cluster::configure(1, true, "  max_sessions: 100\n", "");
    cluster.run(1);
    let port = cluster.config.replicas[0].client_port;
    const USERS: usize = 20;
    const BATCH: u64 = 20;
    let users: Vec<(Client, _)> = (0..USERS)
        .map(|i| {
            let (client, incoming) = Client::connect(&cluster.config).unwrap();
            let name = format!("user{i}");
            assert_eq!(
                client.request(Op::Create { user: name.clone() }),
                Ok(Reply::Created)
            );
            assert!(matches!(
                client.request(Op::Login { user: name }),
                Ok(Reply::LoggedIn { .. })
            ));
            (client, incoming)
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, opened) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    // Each of 8 threads: connect, send a batch of openings at once, count the answers until
    // the replica closes the connection (over its rate), and again.
    let flooders: Vec<_> = (0..8u128)
        .map(|c| {
            let (stop, sent, opened) = (stop.clone(), sent.clone(), opened.clone());
            thread::spawn(move || {
                let mut id: ClientId = (c + 1) << 64;
                while !stop.load(Ordering::Relaxed) {
                    let mut stream = greeted([127, 0, 0, 1], port);
                    for _ in 0..BATCH {
                        id += 1;
                        let bytes = frame::encode(&open_session(id), MAX_FRAME).unwrap();
                        if stream.write_all(&bytes).is_err() {
                            break; // closed for its rate already
                        }
                    }
                    sent.fetch_add(BATCH, Ordering::Relaxed);
                    let mut decoder = FrameDecoder::new(MAX_FRAME);
                    while let Ok(ServerToClient::Reply { .. }) =
                        recv(&mut stream, &mut decoder, Duration::from_secs(5))
                    {
                        opened.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let last_index = || {
        let replica = &cluster.config.replicas[0];
        chat_net::client::status(replica, MAX_FRAME, None, Duration::from_secs(10))
            .unwrap()
            .last_index
    };
    let log_before = last_index();
    let started = Instant::now();
    let mut turn = 0;
    let mut chats = 0;
    while started.elapsed() < flood_for {
        for (i, (user, _)) in users.iter().enumerate() {
            let to = format!("user{}", (i + 1 + turn) % USERS);
            let reply = user.request(Op::Send {
                to,
                text: format!("turn {turn}"),
            });
            assert!(
                matches!(reply, Ok(Reply::Sent { .. })),
                "user{i}: {reply:?}"
            );
            chats += 1;
        }
        turn += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.join().unwrap();
    }
    let ordered = last_index() - log_before;
    for (i, (user, incoming)) in users.iter().enumerate() {
        assert!(
            matches!(user.request(Op::Deliver), Ok(Reply::Delivered { .. })),
            "user{i} is still logged in"
        );
        for event in incoming.try_iter() {
            assert!(
                matches!(event, Incoming::Message(_)),
                "user{i} was told {event:?}"
            );
        }
    }
    println!(
        "{} s: {chats} sends by {USERS} users, all logged in throughout; the flood sent {} \
         session openings ({} answered before their connection was closed for its rate); \
         the log grew by {ordered} entries (the users' sends, their acknowledgements, the \
         flood's admitted openings, time stamps)",
        flood_for.as_secs(),
        sent.load(Ordering::Relaxed),
        opened.load(Ordering::Relaxed)
    );
    cluster.stop();
}
