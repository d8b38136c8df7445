//! kdbr connections on loopback: the handshake, and what happens to peers that send the wrong
//! cluster, an unsupported version, a newer epoch, garbage or an oversized frame (each refused
//! with a reason, the master keeps serving), and to frames of an older epoch.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use kahadb::replication::frame::encode;
use kahadb::replication::net::{connect, serve, Closed, Conn, Identity, KdbrUri};
use kahadb::replication::{Decoder, FrameType, Message, Purpose, DEFAULT_MAX_FRAME};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn identity(cluster: &str, node: &str, epoch: u64) -> Identity {
    Identity {
        cluster: cluster.into(),
        node: node.into(),
        epoch: Arc::new(AtomicU64::new(epoch)),
    }
}

/// A master that answers every Heartbeat with a Heartbeat, then (on a Reject from the peer)
/// sends two heartbeats, the second from an older epoch.
async fn master(epoch: u64) -> KdbrUri {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve(
        listener,
        identity("prod", "master-a", epoch),
        |mut conn: Conn, _node, _purpose| async move {
            while let Ok(m) = conn.recv().await {
                match m {
                    Message::Heartbeat => {
                        if conn.send(&Message::Heartbeat).await.is_err() {
                            return;
                        }
                    }
                    Message::Reject { .. } => {
                        let _ = conn.send(&Message::Heartbeat).await;
                        conn.epoch -= 1;
                        let _ = conn.send(&Message::Heartbeat).await;
                    }
                    _ => return,
                }
            }
        },
    ));
    KdbrUri::parse(&format!("kdbr://127.0.0.1:{port}")).unwrap()
}

/// What a raw peer gets back after sending `bytes`: the reason of a Reject, or None.
async fn raw_exchange(uri: &KdbrUri, bytes: &[u8]) -> Option<String> {
    let mut s = TcpStream::connect(uri.authority()).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut d = Decoder::new(DEFAULT_MAX_FRAME);
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("the master answers or closes in time")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        d.push(&buf[..n]);
        if let Ok(Some(f)) = d.next_frame() {
            return match Message::decode(&f) {
                Ok(Message::Reject { reason }) => Some(reason),
                other => panic!("expected a Reject, got {other:?}"),
            };
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_heartbeats_and_epochs() {
    let uri = master(4).await;
    let me = identity("prod", "slave-1", 0);
    let (mut conn, master_node) = connect(&uri, &me, Purpose::Stream).await.unwrap();
    assert_eq!(master_node, "master-a");
    assert_eq!(conn.peer_epoch, 4);
    assert_eq!(
        me.epoch.load(std::sync::atomic::Ordering::SeqCst),
        4,
        "the slave learns the epoch"
    );
    conn.send(&Message::Heartbeat).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), Message::Heartbeat);
    // The master then sends a frame of an older epoch: refused.
    conn.send(&Message::Reject {
        reason: "test".into(),
    })
    .await
    .unwrap();
    assert_eq!(conn.recv().await.unwrap(), Message::Heartbeat);
    match conn.recv().await {
        Err(Closed::Protocol(r)) => assert!(r.contains("epoch 3 after epoch 4"), "{r}"),
        other => panic!("expected an epoch refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_peers_are_refused_and_the_master_keeps_serving() {
    let uri = master(2).await;
    match connect(&uri, &identity("staging", "slave-x", 0), Purpose::Stream).await {
        Err(Closed::Rejected(r)) => assert!(r.contains("cluster \"staging\""), "{r}"),
        other => panic!(
            "expected a cluster refusal, got {:?}",
            other.map(|(_, n)| n)
        ),
    }
    match connect(&uri, &identity("prod", "slave-y", 7), Purpose::Transfer).await {
        Err(Closed::Rejected(r)) => assert!(r.contains("newer than this node's 2"), "{r}"),
        other => panic!("expected an epoch refusal, got {:?}", other.map(|(_, n)| n)),
    }
    // Garbage, an oversized length, a bad checksum, a wrong first message, a newer version.
    let garbage: Vec<u8> = (0..300u32).map(|i| (i * 7919 % 251) as u8).collect();
    let reason = raw_exchange(&uri, &garbage).await.expect("a reason");
    assert!(reason.starts_with("bad frame"), "{reason}");
    let reason = raw_exchange(&uri, &[0x7f, 0xff, 0xff, 0xff, 1])
        .await
        .expect("a reason");
    assert!(reason.contains("frame length"), "{reason}");
    let mut hb = Vec::new();
    encode(FrameType::Heartbeat, 0, b"", &mut hb);
    let mut flipped = hb.clone();
    flipped[8] ^= 0x10;
    let reason = raw_exchange(&uri, &flipped).await.expect("a reason");
    assert!(reason.contains("checksum"), "{reason}");
    let reason = raw_exchange(&uri, &hb).await.expect("a reason");
    assert!(reason.contains("expected Hello"), "{reason}");
    let mut hello = Vec::new();
    Message::Hello {
        version: 99,
        cluster: "prod".into(),
        node: "n".into(),
        purpose: Purpose::Stream,
    }
    .encode(0, &mut hello);
    let reason = raw_exchange(&uri, &hello).await.expect("a reason");
    assert!(reason.contains("version 99"), "{reason}");
    // A peer that connects and says nothing, then leaves: no effect.
    drop(TcpStream::connect(uri.authority()).await.unwrap());
    // After all that, a proper slave still gets in.
    let (mut conn, _) = connect(&uri, &identity("prod", "slave-2", 0), Purpose::Stream)
        .await
        .unwrap();
    conn.send(&Message::Heartbeat).await.unwrap();
    assert_eq!(conn.recv().await.unwrap(), Message::Heartbeat);
}

#[test]
fn kdbr_addresses() {
    let u = KdbrUri::parse("kdbr://node-a.example:61617").unwrap();
    assert_eq!((u.host.as_str(), u.port), ("node-a.example", 61617));
    assert_eq!(u.to_string(), "kdbr://node-a.example:61617");
    let u = KdbrUri::parse("kdbr://[::1]:5000/").unwrap();
    assert_eq!(u.authority(), "[::1]:5000");
    for bad in [
        "tcp://a:1",
        "kdbr://a",
        "kdbr://:1",
        "kdbr://a:99999",
        "kdbr://a:x",
        "kdbr://u@a:1",
        "",
    ] {
        let e = KdbrUri::parse(bad).unwrap_err();
        assert_eq!(e.code(), kahadb::ErrorCode::Config, "{bad}");
        assert!(
            e.message().contains("expected kdbr://host:port"),
            "{bad}: {e}"
        );
    }
}
