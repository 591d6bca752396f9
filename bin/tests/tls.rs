//! TLS on real `chat-server` processes: a cluster whose peers talk over mutual TLS (and
//! still prove the cluster secret) serves clients that check it against the CA; a plaintext
//! connection, a client trusting another CA, a peer certificate from another CA and an
//! expired peer certificate each get one clear log line and a closed connection, while the
//! replica keeps serving a logged-in client.

mod support;

use chat_bin::tls_files::{Authority, Validity};
use chat_core::chat::{Op, Reply};
use chat_core::codec::frame;
use chat_core::config::{ReplicaAddr, TlsFiles};
use chat_core::wire::{Endpoint, Hello};
use chat_net::client;
use chat_net::tls::ClientTls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::Cluster;

const ANSWER_WITHIN: Duration = Duration::from_secs(5);

#[test]
fn tls_refuses_plaintext_another_ca_and_an_expired_certificate_with_one_line_each() {
    let ca = Authority::new(Validity::standard()).unwrap();
    // A primary is elected only if the peer links work: mutual TLS, then the secret's proof.
    let cluster = Cluster::start_tls(&ca);
    let (client, _incoming) = cluster.client();
    let ok = |r: Result<Reply, client::ClientError>| assert!(r.is_ok(), "{r:?}");
    ok(client.request(Op::Create { user: "ann".into() }));
    ok(client.request(Op::Login { user: "ann".into() }));
    let serving = || {
        let reply = client.request(Op::Send {
            to: "ann".into(),
            text: "still here".into(),
        });
        assert!(matches!(reply, Ok(Reply::Sent { .. })), "{reply:?}");
    };
    serving();
    let id = cluster.wait_for_primary(None);
    let replica = cluster.config.replica(id).unwrap().clone();
    let max_frame = cluster.config.net.max_frame_bytes;

    // Plaintext on the client port: a client without the `tls:` section.
    let mut plain = TcpStream::connect((replica.host.as_str(), replica.client_port)).unwrap();
    let hello = frame::encode(&Hello::new(Endpoint::Client), max_frame).unwrap();
    plain.write_all(&hello).unwrap();
    assert_closed(plain);
    one_line(&cluster, id, "does not speak TLS");
    serving();

    // A client that trusts another CA refuses the replica, which logs why it was dropped.
    let elsewhere = tempfile::tempdir().unwrap();
    let other = Authority::new(Validity::standard()).unwrap();
    let other_ca = elsewhere.path().join("ca.pem");
    std::fs::write(&other_ca, other.pem()).unwrap();
    let wrong = ClientTls::load(&TlsFiles {
        ca: other_ca.display().to_string(),
        certificate: String::new(),
        key: String::new(),
    })
    .unwrap();
    let err = client::status(&replica, max_frame, Some(&wrong), ANSWER_WITHIN).unwrap_err();
    assert!(err.to_string().contains("not issued by our CA"), "{err}");
    one_line(&cluster, id, "ended the handshake (UnknownCA)");
    serving();

    // On the peer port, a certificate from another CA...
    let names = [replica.host.clone()];
    let (cert, key) = other
        .issue("replica 9", &names, Validity::standard())
        .unwrap();
    dial_peer_port(&replica, ca.pem(), &cert, &key, max_frame);
    one_line(&cluster, id, "not issued by our CA");
    serving();

    // ...and an expired one from ours.
    let expired = Validity {
        from: (2020, 1, 1),
        until: (2021, 1, 1),
    };
    let (cert, key) = ca.issue("replica 1", &names, expired).unwrap();
    dial_peer_port(&replica, ca.pem(), &cert, &key, max_frame);
    one_line(&cluster, id, "it has expired");
    serving();

    assert!(cluster.all_running());
    // The replicas still reach each other: every one answers, through TLS, in one view.
    let views: Vec<u64> = (0..support::REPLICAS as u8)
        .map(|r| cluster.status(r).expect("answers").view)
        .collect();
    assert!(views.iter().all(|&v| v == views[0]), "{views:?}");
    drop(client);
}

/// Dials `replica`'s peer port presenting `cert`, sends a `Hello` as replica 1, and expects
/// the replica to close the connection.
fn dial_peer_port(replica: &ReplicaAddr, ca: &str, cert: &str, key: &str, max_frame: u32) {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let name = ServerName::try_from(replica.host.clone()).unwrap();
    let session = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect((replica.host.as_str(), replica.peer_port)).unwrap();
    tcp.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
    let mut tls = rustls::StreamOwned::new(session, tcp);
    let hello = frame::encode(&Hello::new(Endpoint::Replica(1)), max_frame).unwrap();
    // The handshake completes on our side before the replica checks our certificate: the
    // refusal arrives as an alert on the next read.
    let _ = tls.write_all(&hello);
    let mut buf = [0u8; 256];
    let started = Instant::now();
    loop {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => assert!(started.elapsed() < ANSWER_WITHIN, "never closed"),
        }
    }
    assert!(started.elapsed() < ANSWER_WITHIN, "not closed in time");
}

/// The replica closes the connection (rather than leaving it open until a timeout).
fn assert_closed(mut stream: TcpStream) {
    stream.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("not closed: {e}"),
            Ok(_) => {}
        }
    }
    assert!(started.elapsed() < ANSWER_WITHIN, "not closed in time");
}

/// Replica `id`'s log gets exactly one line containing `needle` (waits for it to appear).
fn one_line(cluster: &Cluster, id: u8, needle: &str) {
    let count = || {
        let log = cluster.log(id);
        let lines: Vec<String> = log
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect();
        lines
    };
    let deadline = Instant::now() + ANSWER_WITHIN;
    while count().is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(200));
    let lines = count();
    assert_eq!(
        lines.len(),
        1,
        "lines with {needle:?}:\n{}",
        lines.join("\n")
    );
    eprintln!("replica {id} logged: {}", lines[0]);
}
