//! The journal's byte format, shared with ActiveMQ KahaDB (see `docs/FORMAT.md`).
//!
//! A data file is a sequence of write batches. Each batch is a 28-byte control record (record
//! header `size=28, type=2`, the ASCII magic `WRITE BATCH`, the big-endian int32 length of the
//! records that follow and an int64 whose low 32 bits are their Adler-32), then the records, each
//! with a 5-byte header (big-endian int32 total size including the header, one type byte). The
//! 5-byte EOF marker `-qMa4` follows the last batch and is overwritten by the next one.

/// Size of a record header: int32 size + type byte.
pub const RECORD_HEAD: usize = 5;
/// Type byte of a user record.
pub const USER_RECORD_TYPE: u8 = 1;
/// Type byte of a batch control record.
pub const BATCH_CONTROL_TYPE: u8 = 2;
/// Type byte of a padding record: fills the space of a batch whose write failed. Readers of
/// either implementation skip every record that is not a user record.
pub const PADDING_TYPE: u8 = 3;
/// The control record magic.
pub const BATCH_MAGIC: &[u8; 11] = b"WRITE BATCH";
/// Size of a batch control record.
pub const BATCH_CONTROL_SIZE: usize = RECORD_HEAD + BATCH_MAGIC.len() + 4 + 8;
/// The first 16 bytes of every batch control record.
pub const BATCH_HEADER: [u8; 16] = [
    0, 0, 0, 28, 2, b'W', b'R', b'I', b'T', b'E', b' ', b'B', b'A', b'T', b'C', b'H',
];
/// The end-of-file marker written after each batch: int32 `-qMa` then `4`.
pub const EOF_RECORD: [u8; 5] = *b"-qMa4";
/// The legacy end of file: a zero header.
pub const ZERO_HEADER: [u8; 5] = [0; 5];
/// The largest batch payload ActiveMQ accepts when it checks a batch.
pub const MAX_BATCH_PAYLOAD: usize = i32::MAX as usize - BATCH_CONTROL_SIZE - EOF_RECORD.len();

const _: () = assert!(BATCH_CONTROL_SIZE == 28);

/// Adler-32 as KahaDB computes it (`java.util.zip.Adler32`).
pub fn adler32(data: &[u8]) -> u32 {
    let mut a = adler2::Adler32::new();
    a.write_slice(data);
    a.checksum()
}

/// Writes a complete control record for a payload into the first 28 bytes of `out`.
pub fn write_control(out: &mut [u8], payload: &[u8]) {
    out[..16].copy_from_slice(&BATCH_HEADER);
    out[16..20].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    out[20..28].copy_from_slice(&u64::from(adler32(payload)).to_be_bytes());
}

/// Writes a record header.
pub fn write_record_header(out: &mut [u8], total_size: u32, kind: u8) {
    out[..4].copy_from_slice(&total_size.to_be_bytes());
    out[4] = kind;
}

/// Reads a big-endian u32 at `at` (the caller guarantees 4 bytes).
pub fn be_u32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

/// What starts at an offset of a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchAt {
    /// A batch whose checksum holds, with this payload length; records are well formed.
    Valid { payload_len: usize },
    /// The EOF marker, a zero header, or the end of the bytes: nothing more in this file.
    End,
    /// Anything else: a torn or corrupt batch, or garbage.
    Invalid,
}

/// Examines the bytes at `offset` of `data` (the data of one file, or a prefix of it).
pub fn check_batch(data: &[u8], offset: usize) -> BatchAt {
    let rest = match data.get(offset..) {
        Some(r) => r,
        None => return BatchAt::End,
    };
    if rest.len() < RECORD_HEAD {
        return if rest.iter().all(|b| *b == 0) {
            BatchAt::End
        } else {
            BatchAt::Invalid
        };
    }
    if rest[..5] == EOF_RECORD || rest[..5] == ZERO_HEADER {
        return BatchAt::End;
    }
    if rest.len() < BATCH_CONTROL_SIZE || rest[..16] != BATCH_HEADER {
        return BatchAt::Invalid;
    }
    let payload_len = be_u32(rest, 16) as usize;
    // Neither implementation writes an empty batch: a zero length is a torn control record.
    if payload_len == 0
        || payload_len > MAX_BATCH_PAYLOAD
        || rest.len() < BATCH_CONTROL_SIZE + payload_len
    {
        return BatchAt::Invalid;
    }
    let stored = u64::from_be_bytes([
        rest[20], rest[21], rest[22], rest[23], rest[24], rest[25], rest[26], rest[27],
    ]);
    let payload = &rest[BATCH_CONTROL_SIZE..BATCH_CONTROL_SIZE + payload_len];
    // A zero checksum means "written without checksums" in KahaDB; accept it as KahaDB does,
    // but still insist that the records tile the payload exactly.
    if stored != 0 && stored != u64::from(adler32(payload)) {
        return BatchAt::Invalid;
    }
    if !records_tile(payload) {
        return BatchAt::Invalid;
    }
    BatchAt::Valid { payload_len }
}

/// True when the payload is an exact sequence of well-formed records.
fn records_tile(payload: &[u8]) -> bool {
    let mut pos = 0;
    while pos < payload.len() {
        if payload.len() - pos < RECORD_HEAD {
            return false;
        }
        let size = be_u32(payload, pos) as usize;
        if size < RECORD_HEAD || size > payload.len() - pos {
            return false;
        }
        pos += size;
    }
    true
}

/// Iterates the records of a validated batch payload: `(offset within payload, type, body)`.
pub fn records(payload: &[u8]) -> impl Iterator<Item = (usize, u8, &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos + RECORD_HEAD > payload.len() {
            return None;
        }
        let size = be_u32(payload, pos) as usize;
        if size < RECORD_HEAD || pos + size > payload.len() {
            return None;
        }
        let at = pos;
        pos += size;
        Some((at, payload[at + 4], &payload[at + RECORD_HEAD..at + size]))
    })
}

/// Finds the next offset at or after `from` where a valid batch starts.
pub fn find_next_valid_batch(data: &[u8], from: usize) -> Option<usize> {
    let mut pos = from;
    while pos + BATCH_HEADER.len() <= data.len() {
        let window = &data[pos..];
        let hit = window
            .windows(BATCH_HEADER.len())
            .position(|w| w == BATCH_HEADER)?;
        let at = pos + hit;
        if let BatchAt::Valid { .. } = check_batch(data, at) {
            return Some(at);
        }
        pos = at + 1;
    }
    None
}

/// Builds a padding batch that exactly fills `len` bytes (`len >= BATCH_CONTROL_SIZE + 5`).
pub fn padding_batch(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    write_record_header(
        &mut buf[BATCH_CONTROL_SIZE..],
        (len - BATCH_CONTROL_SIZE) as u32,
        PADDING_TYPE,
    );
    let (control, payload) = buf.split_at_mut(BATCH_CONTROL_SIZE);
    write_control(control, payload);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: &[&[u8]]) -> Vec<u8> {
        let mut buf = vec![0u8; BATCH_CONTROL_SIZE];
        for r in records {
            let mut h = [0u8; 5];
            write_record_header(&mut h, (r.len() + 5) as u32, USER_RECORD_TYPE);
            buf.extend_from_slice(&h);
            buf.extend_from_slice(r);
        }
        let (c, p) = buf.split_at_mut(BATCH_CONTROL_SIZE);
        write_control(c, p);
        buf
    }

    #[test]
    fn adler_matches_known_vector() {
        // Adler-32 of "Wikipedia" is 0x11E60398.
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }

    #[test]
    fn valid_batch_and_records() {
        let mut b = batch(&[b"hello", b"world!"]);
        b.extend_from_slice(&EOF_RECORD);
        assert_eq!(check_batch(&b, 0), BatchAt::Valid { payload_len: 21 });
        let recs: Vec<_> = records(&b[28..49]).collect();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].2, b"world!");
        assert_eq!(check_batch(&b, 49), BatchAt::End);
    }

    #[test]
    fn flipped_byte_is_invalid() {
        let good = batch(&[b"hello"]);
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x40;
            assert_ne!(
                check_batch(&b, 0),
                BatchAt::Valid { payload_len: 10 },
                "flip at {i}"
            );
        }
    }

    #[test]
    fn padding_is_a_valid_batch_without_user_records() {
        let p = padding_batch(100);
        assert_eq!(check_batch(&p, 0), BatchAt::Valid { payload_len: 72 });
        assert!(records(&p[28..]).all(|(_, t, _)| t == PADDING_TYPE));
    }

    #[test]
    fn finds_next_batch_after_garbage() {
        let mut data = vec![7u8; 40];
        data.extend(batch(&[b"x"]));
        assert_eq!(find_next_valid_batch(&data, 0), Some(40));
        assert_eq!(find_next_valid_batch(&data, 41), None);
    }
}
