//! The replication frame decoder against 100,000 random and mutated frames: every input ends in
//! whole valid messages, "need more bytes", or a named error; nothing panics, nothing allocates
//! beyond the frame limit, and every well-formed message round-trips.

use kahadb::replication::{
    Decoder, FileInfo, FileRange, Frame, FrameError, FrameType, Message, Position, Purpose,
    DEFAULT_MAX_FRAME, PROTOCOL_VERSION,
};

/// xorshift64*: a seeded, dependency-free generator so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn string(&mut self, max: usize) -> String {
        let n = self.below(max as u64 + 1) as usize;
        (0..n)
            .map(|_| (b'a' + self.below(26) as u8) as char)
            .collect()
    }
}

fn random_message(r: &mut Rng) -> Message {
    let pos = |r: &mut Rng| Position {
        file: r.below(100) as u32,
        offset: r.next() as u32,
    };
    let range = |r: &mut Rng| FileRange {
        file: r.below(100) as u32,
        offset: r.next() >> 20,
        length: r.below(1 << 20),
    };
    match r.below(11) {
        0 => Message::Hello {
            version: PROTOCOL_VERSION,
            cluster: r.string(20),
            node: r.string(40),
            purpose: if r.below(2) == 0 {
                Purpose::Stream
            } else {
                Purpose::Transfer
            },
        },
        1 => Message::Welcome {
            version: PROTOCOL_VERSION,
            node: r.string(40),
        },
        2 => Message::Reject {
            reason: r.string(80),
        },
        3 => {
            let n = r.below(3000) as usize;
            Message::Batch {
                at: pos(r),
                data: r.bytes(n),
            }
        }
        4 => Message::Ack { durable: pos(r) },
        5 => Message::Inventory {
            files: (0..r.below(20))
                .map(|_| FileInfo {
                    id: r.below(1000) as u32,
                    length: r.next() >> 30,
                    crc: r.next() as u32,
                })
                .collect(),
        },
        6 => Message::SyncPlan {
            truncate: (0..r.below(3))
                .map(|_| (r.below(100) as u32, r.next() >> 30))
                .collect(),
            delete: (0..r.below(5)).map(|_| r.below(100) as u32).collect(),
            fetch: (0..r.below(10)).map(|_| range(r)).collect(),
            live_from: pos(r),
        },
        7 => Message::RangeRequest { range: range(r) },
        8 => {
            let n = r.below(3000) as usize;
            let data = r.bytes(n);
            Message::Range {
                file: r.below(100) as u32,
                offset: r.next() >> 20,
                crc: crc32fast::hash(&data),
                data,
            }
        }
        9 => Message::Remove {
            files: (0..r.below(20)).map(|_| r.below(1000) as u32).collect(),
        },
        _ => Message::Heartbeat,
    }
}

/// Feeds `wire` in random pieces; returns the messages decoded and the error that ended it.
fn decode_all(r: &mut Rng, wire: &[u8], max: u32) -> (Vec<Message>, Option<FrameError>) {
    let mut d = Decoder::new(max);
    let mut out = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let n = 1 + r.below(700) as usize;
        let end = (at + n).min(wire.len());
        d.push(&wire[at..end]);
        at = end;
        loop {
            match d.next_frame() {
                Ok(Some(frame)) => match Message::decode(&frame) {
                    Ok(m) => out.push(m),
                    Err(e) => return (out, Some(e)),
                },
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        assert!(
            d.buffered() <= max as usize + 4 + 700,
            "the decoder holds at most one frame"
        );
    }
    (out, None)
}

#[test]
fn a_hundred_thousand_random_and_mutated_frames() {
    let mut r = Rng(0x6b61_6864_6272_7321);
    let (mut clean, mut refused, mut incomplete) = (0u32, 0u32, 0u32);
    for round in 0..100_000u32 {
        let msgs: Vec<Message> = (0..1 + r.below(3))
            .map(|_| random_message(&mut r))
            .collect();
        let epoch = r.below(5);
        let mut wire = Vec::new();
        for m in &msgs {
            m.encode(epoch, &mut wire);
        }
        match round % 8 {
            // Intact: everything comes back.
            0 | 1 => {
                let (got, err) = decode_all(&mut r, &wire, DEFAULT_MAX_FRAME);
                assert_eq!(err, None, "round {round}");
                assert_eq!(got, msgs, "round {round}");
                clean += 1;
                continue;
            }
            // Bit flips anywhere.
            2 => {
                for _ in 0..1 + r.below(4) {
                    let i = r.below(wire.len() as u64) as usize;
                    wire[i] ^= 1 << r.below(8);
                }
            }
            // Truncated.
            3 => {
                let keep = r.below(wire.len() as u64) as usize;
                wire.truncate(keep);
            }
            // A hostile length field.
            4 => {
                let v = [
                    0u32,
                    1,
                    12,
                    13,
                    u32::MAX,
                    DEFAULT_MAX_FRAME + 1,
                    r.next() as u32,
                ][r.below(7) as usize];
                wire[..4].copy_from_slice(&v.to_be_bytes());
            }
            // Garbage.
            5 => {
                let n = 1 + r.below(5000) as usize;
                wire = r.bytes(n);
            }
            // A valid CRC around a random body of a random (possibly unknown) type.
            6 => {
                wire.clear();
                let t = r.below(13) as u8;
                let n = r.below(200) as usize;
                let body = r.bytes(n);
                let kind = FrameType::from_u8(t);
                match kind {
                    Some(k) => kahadb::replication::frame::encode(k, epoch, &body, &mut wire),
                    None => {
                        kahadb::replication::frame::encode(
                            FrameType::Heartbeat,
                            epoch,
                            &body,
                            &mut wire,
                        );
                        wire[4] = t;
                    }
                }
            }
            // Bytes inserted or removed in the middle.
            _ => {
                let i = r.below(wire.len() as u64) as usize;
                if r.below(2) == 0 {
                    wire.insert(i, r.next() as u8);
                } else {
                    wire.remove(i);
                }
            }
        }
        let (got, err) = decode_all(&mut r, &wire, DEFAULT_MAX_FRAME);
        // Whatever decodes must be one of the messages sent, in order, or a message whose
        // frame happened to survive (a CRC-valid random body that parses).
        if round % 8 != 6 && round % 8 != 5 {
            for (g, m) in got.iter().zip(&msgs) {
                assert_eq!(
                    g, m,
                    "round {round}: a damaged stream yielded a different message"
                );
            }
        }
        match err {
            Some(e) => {
                assert!(!e.to_string().is_empty());
                refused += 1;
            }
            None => incomplete += 1,
        }
    }
    println!("clean {clean}, refused {refused}, ended waiting for bytes {incomplete}");
    assert_eq!(clean, 25_000);
    assert!(
        refused > 50_000,
        "most damaged streams are refused, got {refused}"
    );
}

#[test]
fn every_message_round_trips_with_its_epoch() {
    let mut r = Rng(42);
    for _ in 0..2000 {
        let m = random_message(&mut r);
        let mut wire = Vec::new();
        m.encode(9, &mut wire);
        let mut d = Decoder::new(DEFAULT_MAX_FRAME);
        d.push(&wire);
        let frame: Frame = d.next_frame().unwrap().unwrap();
        assert_eq!(frame.epoch, 9);
        assert_eq!(frame.kind, m.kind());
        assert_eq!(Message::decode(&frame).unwrap(), m);
    }
}

#[test]
fn bodies_that_lie_about_their_contents_are_refused() {
    // A range whose bytes do not match its own CRC.
    let bad = Message::Range {
        file: 1,
        offset: 0,
        crc: 1,
        data: b"abc".to_vec(),
    };
    let mut wire = Vec::new();
    bad.encode(1, &mut wire);
    let mut d = Decoder::new(DEFAULT_MAX_FRAME);
    d.push(&wire);
    let frame = d.next_frame().unwrap().unwrap();
    assert!(matches!(
        Message::decode(&frame),
        Err(FrameError::Malformed { .. })
    ));
    // An inventory claiming a billion files in a few bytes: refused before allocating.
    let mut wire = Vec::new();
    kahadb::replication::frame::encode(
        FrameType::Inventory,
        1,
        &[0x40, 0, 0, 0, 1, 2, 3],
        &mut wire,
    );
    let mut d = Decoder::new(DEFAULT_MAX_FRAME);
    d.push(&wire);
    let frame = d.next_frame().unwrap().unwrap();
    let e = Message::decode(&frame).unwrap_err();
    assert!(e.to_string().contains("cannot fit"), "{e}");
}
