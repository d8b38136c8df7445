//! The packed binary forms in which the bindings (JNI and C) hand transactions to the store and
//! get lists back: big-endian, strings as an `i32` UTF-8 length and the bytes, byte arrays as an
//! `i32` length (−1 for none) and the bytes. Documented for Java in `dev.kahadb.Store` and
//! `dev.kahadb.TxOps`, for C in `include/kahadb.h`.
//!
//! ```text
//! tx id    = u8 0, string connection, i64 value                      (local)
//!          | u8 1, i32 format, bytes global id, bytes branch          (XA)
//! ops      = i32 n, n × op
//! op       = u8 1 (add), u8 dest type, string dest, string message id, i32 priority,
//!                 u8 prioritized, bytes body
//!          | u8 2 (remove), u8 dest type, string dest, string message id,
//!                 bytes? subscription (UTF-8), bytes? ack
//! prepared = i32 n, n × (tx id, ops)
//! messages = i32 n, n × (i64 sequence, u8 lane, string message id, bytes body)
//! dests    = i32 n, n × (u8 type, string name)
//! subs     = i32 n, n × (string key, bytes info)
//! ```

use crate::error::{Error, ErrorCode, Result};

use super::codec::DestinationType;
use super::ops::{PreparedTx, ReadMessage, TxRequest};
use super::state::{DestKey, TxKey};

const OP_ADD: u8 = 1;
const OP_REMOVE: u8 = 2;

/// Reads a packed buffer, with a clear error for anything malformed.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8], what: &'static str) -> Reader<'a> {
        Reader { data, pos: 0, what }
    }

    fn bad(&self, why: &str) -> Error {
        Error::new(
            ErrorCode::InvalidArgument,
            format!("malformed {} at byte {}: {why}", self.what, self.pos),
        )
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or_else(|| self.bad(&format!("{n} more bytes needed, the buffer ends")))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn i32(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i64(&mut self) -> Result<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    pub fn bytes_opt(&mut self) -> Result<Option<&'a [u8]>> {
        let n = self.i32()?;
        if n == -1 {
            return Ok(None);
        }
        let n = usize::try_from(n).map_err(|_| self.bad(&format!("negative length {n}")))?;
        self.take(n).map(Some)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        self.bytes_opt()?
            .ok_or_else(|| self.bad("null where bytes are required"))
    }

    pub fn string(&mut self) -> Result<String> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.bad("a string is not valid UTF-8"))
    }

    pub fn string_opt(&mut self) -> Result<Option<String>> {
        match self.bytes_opt()? {
            None => Ok(None),
            Some(b) => String::from_utf8(b.to_vec())
                .map(Some)
                .map_err(|_| self.bad("a string is not valid UTF-8")),
        }
    }

    pub fn finish(&self) -> Result<()> {
        if self.pos != self.data.len() {
            return Err(self.bad(&format!("{} bytes left over", self.data.len() - self.pos)));
        }
        Ok(())
    }

    fn dest(&mut self) -> Result<DestKey> {
        let kind = self.u8()?;
        if kind > 3 {
            return Err(self.bad(&format!("destination type {kind} is not 0..=3")));
        }
        let name = self.string()?;
        Ok(DestKey::new(
            DestinationType::from_i32(i32::from(kind)),
            name,
        ))
    }

    pub fn tx(&mut self) -> Result<TxKey> {
        match self.u8()? {
            0 => {
                let connection = self.string()?;
                let id = self.i64()?;
                Ok(TxKey::Local { connection, id })
            }
            1 => {
                let format = self.i32()?;
                let global = self.bytes()?.to_vec();
                let branch = self.bytes()?.to_vec();
                Ok(TxKey::Xa {
                    format,
                    global,
                    branch,
                })
            }
            k => Err(self.bad(&format!("transaction kind {k} is not 0 (local) or 1 (XA)"))),
        }
    }

    pub fn ops(&mut self) -> Result<Vec<TxRequest>> {
        let n = self.i32()?;
        let n = usize::try_from(n).map_err(|_| self.bad(&format!("negative count {n}")))?;
        let mut ops = Vec::with_capacity(n.min(4096));
        for _ in 0..n {
            ops.push(match self.u8()? {
                OP_ADD => {
                    let destination = self.dest()?;
                    let message_id = self.string()?;
                    let priority = self.i32()?;
                    let prioritized = self.u8()? != 0;
                    let body = self.bytes()?.to_vec();
                    TxRequest::Add {
                        destination,
                        message_id,
                        priority,
                        prioritized,
                        body,
                    }
                }
                OP_REMOVE => {
                    let destination = self.dest()?;
                    let message_id = self.string()?;
                    let subscription = self.string_opt()?;
                    let ack = self.bytes_opt()?.map(<[u8]>::to_vec);
                    TxRequest::Remove {
                        destination,
                        message_id,
                        subscription,
                        ack,
                    }
                }
                k => {
                    return Err(
                        self.bad(&format!("operation kind {k} is not 1 (add) or 2 (remove)"))
                    )
                }
            });
        }
        Ok(ops)
    }
}

/// Parses a transaction id buffer.
pub fn parse_tx(data: &[u8]) -> Result<TxKey> {
    let mut r = Reader::new(data, "transaction id");
    let tx = r.tx()?;
    r.finish()?;
    Ok(tx)
}

/// Parses an operations buffer.
pub fn parse_ops(data: &[u8]) -> Result<Vec<TxRequest>> {
    let mut r = Reader::new(data, "transaction operations");
    let ops = r.ops()?;
    r.finish()?;
    Ok(ops)
}

/// Builds packed buffers.
#[derive(Default)]
pub struct Packer {
    pub out: Vec<u8>,
}

impl Packer {
    pub fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub fn i32(&mut self, v: i32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub fn count(&mut self, n: usize) {
        self.i32(i32::try_from(n).unwrap_or(i32::MAX));
    }

    pub fn bytes_opt(&mut self, v: Option<&[u8]>) {
        match v {
            None => self.i32(-1),
            Some(b) => {
                self.count(b.len());
                self.out.extend_from_slice(b);
            }
        }
    }

    pub fn bytes(&mut self, v: &[u8]) {
        self.bytes_opt(Some(v));
    }

    pub fn string(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn dest(&mut self, d: &DestKey) {
        self.u8(d.kind.clamp(0, 3) as u8);
        self.string(&d.name);
    }

    pub fn tx(&mut self, tx: &TxKey) {
        match tx {
            TxKey::Local { connection, id } => {
                self.u8(0);
                self.string(connection);
                self.i64(*id);
            }
            TxKey::Xa {
                format,
                global,
                branch,
            } => {
                self.u8(1);
                self.i32(*format);
                self.bytes(global);
                self.bytes(branch);
            }
        }
    }

    pub fn ops(&mut self, ops: &[TxRequest]) {
        self.count(ops.len());
        for op in ops {
            match op {
                TxRequest::Add {
                    destination,
                    message_id,
                    priority,
                    prioritized,
                    body,
                } => {
                    self.u8(OP_ADD);
                    self.dest(destination);
                    self.string(message_id);
                    self.i32(*priority);
                    self.u8(u8::from(*prioritized));
                    self.bytes(body);
                }
                TxRequest::Remove {
                    destination,
                    message_id,
                    subscription,
                    ack,
                } => {
                    self.u8(OP_REMOVE);
                    self.dest(destination);
                    self.string(message_id);
                    self.bytes_opt(subscription.as_deref().map(str::as_bytes));
                    self.bytes_opt(ack.as_deref());
                }
            }
        }
    }
}

/// Packs prepared transactions.
pub fn pack_prepared(list: &[PreparedTx]) -> Vec<u8> {
    let mut p = Packer::default();
    p.count(list.len());
    for t in list {
        p.tx(&t.tx);
        p.ops(&t.ops);
    }
    p.out
}

/// Packs messages read for a cursor.
pub fn pack_messages(list: &[ReadMessage]) -> Vec<u8> {
    let mut p = Packer {
        out: Vec::with_capacity(
            4 + list
                .iter()
                .map(|m| 21 + m.message_id.len() + m.body.len())
                .sum::<usize>(),
        ),
    };
    p.count(list.len());
    for m in list {
        p.i64(m.sequence as i64);
        p.u8(m.lane);
        p.string(&m.message_id);
        p.bytes(&m.body);
    }
    p.out
}

/// Packs a destination list.
pub fn pack_destinations(list: &[DestKey]) -> Vec<u8> {
    let mut p = Packer::default();
    p.count(list.len());
    for d in list {
        p.dest(d);
    }
    p.out
}

/// Packs subscriptions.
pub fn pack_subscriptions(list: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut p = Packer::default();
    p.count(list.len());
    for (k, info) in list {
        p.string(k);
        p.bytes(info);
    }
    p.out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_and_tx_round_trip() {
        let ops = vec![
            TxRequest::Add {
                destination: DestKey::new(DestinationType::Queue, "q"),
                message_id: "p:1".into(),
                priority: 7,
                prioritized: true,
                body: b"body".to_vec(),
            },
            TxRequest::Remove {
                destination: DestKey::new(DestinationType::Topic, "t"),
                message_id: "p:2".into(),
                subscription: Some("c:s".into()),
                ack: None,
            },
        ];
        let mut p = Packer::default();
        p.ops(&ops);
        assert_eq!(parse_ops(&p.out).unwrap(), ops);
        for tx in [
            TxKey::Local {
                connection: "c".into(),
                id: -5,
            },
            TxKey::Xa {
                format: 3,
                global: vec![1, 2],
                branch: vec![],
            },
        ] {
            let mut p = Packer::default();
            p.tx(&tx);
            assert_eq!(parse_tx(&p.out).unwrap(), tx);
        }
    }

    #[test]
    fn malformed_buffers_are_refused() {
        let mut p = Packer::default();
        p.ops(&[TxRequest::Add {
            destination: DestKey::new(DestinationType::Queue, "q"),
            message_id: "p:1".into(),
            priority: 4,
            prioritized: false,
            body: vec![9; 10],
        }]);
        for cut in 0..p.out.len() {
            let e = parse_ops(&p.out[..cut]).unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidArgument, "cut at {cut}");
        }
        let mut long = p.out.clone();
        long.push(0);
        assert!(parse_ops(&long).is_err());
        assert!(parse_tx(&[7]).is_err());
        assert!(parse_ops(&[0, 0, 0, 1, 9]).is_err());
        assert!(parse_ops(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
