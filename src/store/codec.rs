//! The codec of KahaDB's journal commands: the records `MessageDatabase` writes to the journal.
//!
//! # Record layout
//!
//! ActiveMQ frames every command the same way (`MessageDatabase.toByteSequence`, called by
//! `MessageDatabase.store(JournalCommand, ...)`; the scheduler store and the multi-KahaDB
//! transaction store use identical copies of it):
//!
//! ```text
//! +------------+---------------------------+--------------------------------------+
//! | entry type | length of the message     | the message's fields                 |
//! | 1 byte     | varint (writeRawVarint32) | protobuf, in ascending field order   |
//! +------------+---------------------------+--------------------------------------+
//! ```
//!
//! The entry type is the `KahaEntryType` number ([`KahaEntryType`]); the rest is what the
//! protobuf runtime's `BaseMessage.writeFramed` writes: `writeRawVarint32(serializedSizeUnframed())`
//! then `writeUnframed`. Embedded messages are ordinary length-delimited fields (wire type 2).
//!
//! # Encoding
//!
//! [`JournalCommand::encode`] writes exactly the bytes ActiveMQ 6.3.1 writes for the same field
//! values: the fields that are present, in the order the generated Java classes write them
//! (ascending field number, which is also the declaration order), with the Java runtime's
//! integer encodings: `int32` values are varints, sign-extended to ten bytes when negative;
//! `int64` values are varints of their two's complement; enums are written as *unsigned* 32-bit
//! varints; `bool` is one byte, `0` or `1`; strings are UTF-8.
//!
//! Every field is an `Option`, required or not, because that is what ActiveMQ itself does:
//! its generated classes keep a presence bit per field, write only the fields that are set, and
//! its journal reader (`MessageDatabase.load`, which uses `mergeFramed`) never checks that the
//! required ones are there. ActiveMQ does write records with required fields missing (the periodic
//! journal sync stores a `KahaTraceCommand` with no `message`), so a faithful reader must accept
//! them and a faithful writer must be able to reproduce them. [`JournalCommand::missing_fields`]
//! lists the required fields that are absent, named as Java's `missingFields()` names them.
//!
//! # Decoding
//!
//! [`JournalCommand::decode`] is tolerant where that loses nothing and strict where the input is
//! damaged:
//!
//! * unknown fields (and known field numbers with an unexpected wire type) are skipped by their
//!   wire type, groups included;
//! * a field that appears twice follows protobuf's rules: the last scalar wins, embedded messages
//!   are merged;
//! * required fields may be missing (see above);
//! * an unknown entry type decodes to [`JournalCommand::Unknown`] with its payload kept verbatim,
//!   so a newer broker's records can be carried through;
//! * strings that are not valid UTF-8 are decoded lossily, as Java's `new String(bytes, "UTF-8")`
//!   does; an enum number with no name is kept as [`DestinationType::Unknown`];
//! * bytes after the end of the framed message are ignored, as `MessageDatabase.load` ignores them.
//!
//! Every length is checked against what is left of the enclosing message. A truncated varint or
//! field, a varint longer than ten bytes, a negative or overlong length, field number 0, an
//! unmatched end-group tag or wire type 6 or 7 is an [`ErrorCode::Corrupt`] error naming the field
//! and the byte offset in the record. No input makes the decoder panic.
//!
//! # Quirks of the Java implementation
//!
//! * `KahaLocalTransactionId` declares `connection_id` and `transaction_id` both as field 1; they
//!   are told apart by wire type (tag `0x0a`, a string, and tag `0x08`, a varint), and written in
//!   that order.
//! * The generated Java parsers do not skip unknown fields: they read the unknown field's value as
//!   if it were the next tag. This codec skips them properly.
//! * Java's `readBool` reads a 32-bit varint, so a varint whose low 32 bits are zero is `false`
//!   even if higher bits are set; this codec does the same.

use std::fmt;

use crate::error::{Error, ErrorCode, Result};

// ------------------------------------------------------------------------------------------------
// Entry types
// ------------------------------------------------------------------------------------------------

/// The `KahaEntryType` byte that starts every journal command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum KahaEntryType {
    Trace = 0,
    AddMessage = 1,
    RemoveMessage = 2,
    Prepare = 3,
    Commit = 4,
    Rollback = 5,
    RemoveDestination = 6,
    Subscription = 7,
    ProducerAudit = 8,
    AckMessageFileMap = 9,
    UpdateMessage = 10,
    AddScheduledJob = 11,
    RescheduleJob = 12,
    RemoveScheduledJob = 13,
    RemoveScheduledJobs = 14,
    DestroyScheduler = 15,
    RewrittenDataFile = 16,
}

impl KahaEntryType {
    /// All entry types ActiveMQ 6.3.1 knows, in number order.
    pub const ALL: [KahaEntryType; 17] = [
        KahaEntryType::Trace,
        KahaEntryType::AddMessage,
        KahaEntryType::RemoveMessage,
        KahaEntryType::Prepare,
        KahaEntryType::Commit,
        KahaEntryType::Rollback,
        KahaEntryType::RemoveDestination,
        KahaEntryType::Subscription,
        KahaEntryType::ProducerAudit,
        KahaEntryType::AckMessageFileMap,
        KahaEntryType::UpdateMessage,
        KahaEntryType::AddScheduledJob,
        KahaEntryType::RescheduleJob,
        KahaEntryType::RemoveScheduledJob,
        KahaEntryType::RemoveScheduledJobs,
        KahaEntryType::DestroyScheduler,
        KahaEntryType::RewrittenDataFile,
    ];

    /// The type for an entry-type byte, if ActiveMQ 6.3.1 defines it.
    pub fn from_u8(v: u8) -> Option<KahaEntryType> {
        Self::ALL.get(usize::from(v)).copied()
    }

    /// The entry-type byte.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The Java enum constant's name, e.g. `"KAHA_ADD_MESSAGE_COMMAND"`.
    pub fn name(self) -> &'static str {
        match self {
            KahaEntryType::Trace => "KAHA_TRACE_COMMAND",
            KahaEntryType::AddMessage => "KAHA_ADD_MESSAGE_COMMAND",
            KahaEntryType::RemoveMessage => "KAHA_REMOVE_MESSAGE_COMMAND",
            KahaEntryType::Prepare => "KAHA_PREPARE_COMMAND",
            KahaEntryType::Commit => "KAHA_COMMIT_COMMAND",
            KahaEntryType::Rollback => "KAHA_ROLLBACK_COMMAND",
            KahaEntryType::RemoveDestination => "KAHA_REMOVE_DESTINATION_COMMAND",
            KahaEntryType::Subscription => "KAHA_SUBSCRIPTION_COMMAND",
            KahaEntryType::ProducerAudit => "KAHA_PRODUCER_AUDIT_COMMAND",
            KahaEntryType::AckMessageFileMap => "KAHA_ACK_MESSAGE_FILE_MAP_COMMAND",
            KahaEntryType::UpdateMessage => "KAHA_UPDATE_MESSAGE_COMMAND",
            KahaEntryType::AddScheduledJob => "KAHA_ADD_SCHEDULED_JOB_COMMAND",
            KahaEntryType::RescheduleJob => "KAHA_RESCHEDULE_JOB_COMMAND",
            KahaEntryType::RemoveScheduledJob => "KAHA_REMOVE_SCHEDULED_JOB_COMMAND",
            KahaEntryType::RemoveScheduledJobs => "KAHA_REMOVE_SCHEDULED_JOBS_COMMAND",
            KahaEntryType::DestroyScheduler => "KAHA_DESTROY_SCHEDULER_COMMAND",
            KahaEntryType::RewrittenDataFile => "KAHA_REWRITTEN_DATA_FILE_COMMAND",
        }
    }
}

impl fmt::Display for KahaEntryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ------------------------------------------------------------------------------------------------
// Enums inside messages
// ------------------------------------------------------------------------------------------------

/// `KahaDestination.DestinationType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestinationType {
    Queue,
    Topic,
    TempQueue,
    TempTopic,
    /// A number with no name in 6.3.1. Java drops such a value on reading (leaving the field
    /// unset); this codec keeps it.
    Unknown(i32),
}

impl DestinationType {
    /// The type for a wire number.
    pub fn from_i32(v: i32) -> DestinationType {
        match v {
            0 => DestinationType::Queue,
            1 => DestinationType::Topic,
            2 => DestinationType::TempQueue,
            3 => DestinationType::TempTopic,
            other => DestinationType::Unknown(other),
        }
    }

    /// The wire number.
    pub fn as_i32(self) -> i32 {
        match self {
            DestinationType::Queue => 0,
            DestinationType::Topic => 1,
            DestinationType::TempQueue => 2,
            DestinationType::TempTopic => 3,
            DestinationType::Unknown(v) => v,
        }
    }

    /// The Java constant's name (`"QUEUE"`, ...), or `"UNKNOWN"`.
    pub fn name(self) -> &'static str {
        match self {
            DestinationType::Queue => "QUEUE",
            DestinationType::Topic => "TOPIC",
            DestinationType::TempQueue => "TEMP_QUEUE",
            DestinationType::TempTopic => "TEMP_TOPIC",
            DestinationType::Unknown(_) => "UNKNOWN",
        }
    }

    /// Whether messages sent here go to every subscriber (a topic or temporary topic).
    pub fn is_topic(self) -> bool {
        matches!(self, DestinationType::Topic | DestinationType::TempTopic)
    }
}

// ------------------------------------------------------------------------------------------------
// Wire primitives: writing
// ------------------------------------------------------------------------------------------------

const WIRE_VARINT: u32 = 0;
const WIRE_FIXED64: u32 = 1;
const WIRE_LEN: u32 = 2;
const WIRE_START_GROUP: u32 = 3;
const WIRE_END_GROUP: u32 = 4;
const WIRE_FIXED32: u32 = 5;

/// The longest varint the Java runtime reads (and the longest a 64-bit value needs).
const MAX_VARINT_LEN: usize = 10;

const fn tag(field: u32, wire: u32) -> u32 {
    (field << 3) | wire
}

fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

// ------------------------------------------------------------------------------------------------
// Wire primitives: reading
// ------------------------------------------------------------------------------------------------

/// A decoding failure on its way up: what went wrong, where in the record, and the path of
/// fields (innermost first) that led there.
#[derive(Debug)]
struct Fault {
    at: usize,
    what: String,
    path: Vec<&'static str>,
}

impl Fault {
    fn inside(mut self, field: &'static str) -> Fault {
        self.path.push(field);
        self
    }

    fn into_error(self, context: &str, root: &str) -> Error {
        let mut path = String::from(root);
        for p in self.path.iter().rev() {
            path.push('.');
            path.push_str(p);
        }
        Error::new(
            ErrorCode::Corrupt,
            format!("{context}: {path} at byte {}: {}", self.at, self.what),
        )
    }
}

type Decoded<T> = std::result::Result<T, Fault>;

/// A cursor over one message's bytes; `base` is the offset of `data[0]` in the whole record, for
/// error messages.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], base: usize) -> Reader<'a> {
        Reader { data, pos: 0, base }
    }

    fn at(&self) -> usize {
        self.base + self.pos
    }

    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn fault(&self, at: usize, what: impl Into<String>) -> Fault {
        Fault {
            at,
            what: what.into(),
            path: Vec::new(),
        }
    }

    /// A varint of at most ten bytes; bits beyond the 64th are ignored, as Java does.
    fn varint(&mut self) -> Decoded<u64> {
        let start = self.at();
        let mut value = 0u64;
        for i in 0..MAX_VARINT_LEN {
            let Some(&b) = self.data.get(self.pos) else {
                return Err(self.fault(start, "truncated varint"));
            };
            self.pos += 1;
            // i <= 9, so the shift is at most 63; bits shifted out are dropped, as in Java.
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.fault(start, "malformed varint: longer than ten bytes"))
    }

    /// Java's `readRawVarint32`: a varint of up to ten bytes truncated to its low 32 bits.
    fn varint32(&mut self) -> Decoded<i32> {
        Ok(self.varint()? as u32 as i32)
    }

    fn take(&mut self, n: usize, what: &str) -> Decoded<&'a [u8]> {
        let end = self.pos.checked_add(n);
        let Some(s) = end.and_then(|end| self.data.get(self.pos..end)) else {
            return Err(self.fault(
                self.at(),
                format!(
                    "{what} of {n} bytes runs past the end of its message ({} bytes left)",
                    self.remaining()
                ),
            ));
        };
        self.pos += n;
        Ok(s)
    }

    /// A varint length (Java reads it as a signed 32-bit int) and that many bytes.
    fn len_delimited(&mut self) -> Decoded<&'a [u8]> {
        let start = self.at();
        let n = self.varint32()?;
        let Ok(n) = usize::try_from(n) else {
            return Err(self.fault(start, format!("negative length {n}")));
        };
        // Reported at the length prefix, the byte that is wrong if the value does not fit.
        self.take(n, "length-delimited value").map_err(|mut f| {
            f.at = start;
            f
        })
    }

    /// Skips the value of a field we do not know, by its wire type.
    fn skip(&mut self, tag: u32) -> Decoded<()> {
        let at = self.at();
        match tag & 7 {
            WIRE_VARINT => self.varint().map(|_| ()),
            WIRE_FIXED64 => self.take(8, "fixed64 value").map(|_| ()),
            WIRE_LEN => self.len_delimited().map(|_| ()),
            WIRE_FIXED32 => self.take(4, "fixed32 value").map(|_| ()),
            WIRE_START_GROUP => self.skip_group(tag >> 3, at),
            WIRE_END_GROUP => Err(self.fault(
                at,
                format!("end-group tag for field {} with no group open", tag >> 3),
            )),
            w => Err(self.fault(at, format!("invalid wire type {w} (tag {tag})"))),
        }
    }

    /// Skips a group whose start tag (for `field`) has been read, nested groups included.
    /// Iterative, so that deeply nested input cannot exhaust the stack.
    fn skip_group(&mut self, field: u32, start: usize) -> Decoded<()> {
        let mut open = vec![field];
        while let Some(&innermost) = open.last() {
            if self.is_empty() {
                return Err(self.fault(start, format!("group for field {field} is never closed")));
            }
            let at = self.at();
            let t = self.varint32()? as u32;
            if t >> 3 == 0 {
                return Err(self.fault(at, format!("invalid tag {t}: field number 0")));
            }
            match t & 7 {
                WIRE_START_GROUP => open.push(t >> 3),
                WIRE_END_GROUP if t >> 3 == innermost => {
                    open.pop();
                }
                WIRE_END_GROUP => {
                    return Err(self.fault(
                        at,
                        format!(
                            "end-group tag for field {} inside the group of field {innermost}",
                            t >> 3
                        ),
                    ))
                }
                _ => self.skip(t)?,
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------------
// Field values
// ------------------------------------------------------------------------------------------------

/// How one type of field value is written and read. Scalars replace an earlier value; embedded
/// messages merge into it, as protobuf (and ActiveMQ's generated `mergeUnframed`) does.
trait FieldValue: Sized {
    const WIRE: u32;
    /// Encoded length of the value, without its tag.
    fn value_len(&self) -> usize;
    fn write_value(&self, out: &mut Vec<u8>);
    fn merge_value(slot: &mut Option<Self>, r: &mut Reader<'_>) -> Decoded<()>;
    /// For embedded messages: the required fields missing inside, prefixed with `prefix`.
    fn missing_inside(&self, _prefix: &str, _out: &mut Vec<String>) {}
}

impl FieldValue for String {
    const WIRE: u32 = WIRE_LEN;
    fn value_len(&self) -> usize {
        varint_len(self.len() as u64) + self.len()
    }
    fn write_value(&self, out: &mut Vec<u8>) {
        put_varint(out, self.len() as u64);
        out.extend_from_slice(self.as_bytes());
    }
    fn merge_value(slot: &mut Option<Self>, r: &mut Reader<'_>) -> Decoded<()> {
        let bytes = r.len_delimited()?;
        *slot = Some(String::from_utf8_lossy(bytes).into_owned());
        Ok(())
    }
}

impl FieldValue for Vec<u8> {
    const WIRE: u32 = WIRE_LEN;
    fn value_len(&self) -> usize {
        varint_len(self.len() as u64) + self.len()
    }
    fn write_value(&self, out: &mut Vec<u8>) {
        put_varint(out, self.len() as u64);
        out.extend_from_slice(self);
    }
    fn merge_value(slot: &mut Option<Self>, r: &mut Reader<'_>) -> Decoded<()> {
        *slot = Some(r.len_delimited()?.to_vec());
        Ok(())
    }
}

/// `int32`: `CodedOutputStream.writeInt32` sign-extends negative values to 64 bits (ten bytes).
impl FieldValue for i32 {
    const WIRE: u32 = WIRE_VARINT;
    fn value_len(&self) -> usize {
        varint_len(i64::from(*self) as u64)
    }
    fn write_value(&self, out: &mut Vec<u8>) {
        put_varint(out, i64::from(*self) as u64);
    }
    fn merge_value(slot: &mut Option<Self>, r: &mut Reader<'_>) -> Decoded<()> {
        *slot = Some(r.varint32()?);
        Ok(())
    }
}

/// `int64`: the varint of the two's complement.
impl FieldValue for i64 {
    const WIRE: u32 = WIRE_VARINT;
    fn value_len(&self) -> usize {
        varint_len(*self as u64)
    }
    fn write_value(&self, out: &mut Vec<u8>) {
        put_varint(out, *self as u64);
    }
    fn merge_value(slot: &mut Option<Self>, r: &mut Reader<'_>) -> Decoded<()> {
        *slot = Some(r.varint()? as i64);
        Ok(())
    }
}

/// `bool`: written as one raw byte; read as Java's `readRawVarint32() != 0`.
impl FieldValue for bool {
    const WIRE: u32 = WIRE_VARINT;
    fn value_len(&self) -> usize {
        1
    }
    fn write_value(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn merge_value(slot: &mut Option<Self>, r: &mut Reader<'_>) -> Decoded<()> {
        *slot = Some(r.varint32()? != 0);
        Ok(())
    }
}

/// Enums: `CodedOutputStream.writeEnum` writes an *unsigned* 32-bit varint.
impl FieldValue for DestinationType {
    const WIRE: u32 = WIRE_VARINT;
    fn value_len(&self) -> usize {
        varint_len(u64::from(self.as_i32() as u32))
    }
    fn write_value(&self, out: &mut Vec<u8>) {
        put_varint(out, u64::from(self.as_i32() as u32));
    }
    fn merge_value(slot: &mut Option<Self>, r: &mut Reader<'_>) -> Decoded<()> {
        *slot = Some(DestinationType::from_i32(r.varint32()?));
        Ok(())
    }
}

/// What every message type can do; the public, per-type methods are built on it.
trait Message: Default {
    /// The Java class name, for error messages.
    const NAME: &'static str;
    fn body_len(&self) -> usize;
    fn write_body(&self, out: &mut Vec<u8>);
    /// Reads the value of one field if `tag` (field number and wire type) is one of ours.
    fn merge_field(&mut self, tag: u32, r: &mut Reader<'_>) -> Decoded<bool>;
    fn missing(&self, prefix: &str, out: &mut Vec<String>);

    fn merge_body(&mut self, r: &mut Reader<'_>) -> Decoded<()> {
        while !r.is_empty() {
            let at = r.at();
            let t = r.varint32()? as u32;
            if t >> 3 == 0 {
                return Err(r.fault(at, format!("invalid tag {t}: field number 0")));
            }
            if !self.merge_field(t, r)? {
                r.skip(t)?;
            }
        }
        Ok(())
    }

    /// Reads `[varint length][body]` from `data`; returns the message and the bytes consumed.
    fn read_framed(data: &[u8], base: usize) -> Decoded<(Self, usize)> {
        let mut outer = Reader::new(data, base);
        let body = outer.len_delimited()?;
        let mut m = Self::default();
        m.merge_body(&mut Reader::new(body, base + outer.pos - body.len()))?;
        Ok((m, outer.pos))
    }

    fn write_framed(&self, out: &mut Vec<u8>) {
        put_varint(out, self.body_len() as u64);
        self.write_body(out);
    }
}

fn field_len<V: FieldValue>(field: u32, v: &V) -> usize {
    varint_len(u64::from(tag(field, 0))) + v.value_len()
}

fn write_field<V: FieldValue>(field: u32, v: &V, out: &mut Vec<u8>) {
    put_varint(out, u64::from(tag(field, V::WIRE)));
    v.write_value(out);
}

macro_rules! is_required {
    (required) => {
        true
    };
    (optional) => {
        false
    };
}

/// Declares a message: the struct (every field an `Option`, see the module documentation), its
/// [`Message`] implementation, and its public framed/unframed encode and decode methods. Fields
/// are listed in the order the Java class writes them; `$proto` is the field's name in
/// `journal-data.proto`, used in error messages and in `missing_fields`.
macro_rules! kaha_message {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $rule:ident $num:literal $proto:literal $field:ident : $ty:ty,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                pub $field: Option<$ty>,
            )*
        }

        impl Message for $name {
            const NAME: &'static str = stringify!($name);

            fn body_len(&self) -> usize {
                0 $( + self.$field.as_ref().map_or(0, |v| field_len($num, v)) )*
            }

            fn write_body(&self, out: &mut Vec<u8>) {
                $(
                    if let Some(v) = &self.$field {
                        write_field($num, v, out);
                    }
                )*
            }

            fn merge_field(&mut self, t: u32, r: &mut Reader<'_>) -> Decoded<bool> {
                $(
                    if t == tag($num, <$ty as FieldValue>::WIRE) {
                        <$ty as FieldValue>::merge_value(&mut self.$field, r)
                            .map_err(|f| f.inside($proto))?;
                        return Ok(true);
                    }
                )*
                Ok(false)
            }

            fn missing(&self, prefix: &str, out: &mut Vec<String>) {
                $(
                    if is_required!($rule) && self.$field.is_none() {
                        out.push(format!("{prefix}{}", $proto));
                    }
                )*
                $(
                    if let Some(v) = &self.$field {
                        v.missing_inside(&format!("{prefix}{}.", $proto), out);
                    }
                )*
            }
        }

        impl FieldValue for $name {
            const WIRE: u32 = WIRE_LEN;
            fn value_len(&self) -> usize {
                let n = self.body_len();
                varint_len(n as u64) + n
            }
            fn write_value(&self, out: &mut Vec<u8>) {
                self.write_framed(out);
            }
            fn merge_value(slot: &mut Option<Self>, r: &mut Reader<'_>) -> Decoded<()> {
                let body = r.len_delimited()?;
                let base = r.at() - body.len();
                slot.get_or_insert_with(Default::default)
                    .merge_body(&mut Reader::new(body, base))
            }
            fn missing_inside(&self, prefix: &str, out: &mut Vec<String>) {
                self.missing(prefix, out);
            }
        }

        impl $name {
            /// The message's fields without a length prefix (Java's `toUnframedByteArray`).
            pub fn encode_unframed(&self) -> Vec<u8> {
                let mut out = Vec::with_capacity(self.body_len());
                self.write_body(&mut out);
                out
            }

            /// The message with its varint length prefix (Java's `toFramedByteArray`), as it is
            /// embedded in a journal command.
            pub fn encode_framed(&self) -> Vec<u8> {
                let n = self.body_len();
                let mut out = Vec::with_capacity(varint_len(n as u64) + n);
                self.write_framed(&mut out);
                out
            }

            /// Length of [`Self::encode_unframed`]'s output.
            pub fn encoded_len_unframed(&self) -> usize {
                self.body_len()
            }

            /// Decodes the message's fields, all of `data`.
            pub fn decode_unframed(data: &[u8]) -> Result<Self> {
                let mut m = Self::default();
                m.merge_body(&mut Reader::new(data, 0))
                    .map_err(|f| f.into_error("corrupt message", Self::NAME))?;
                Ok(m)
            }

            /// Decodes a length-prefixed message from the start of `data`; returns it and the
            /// number of bytes it took (bytes after it are not looked at).
            pub fn decode_framed(data: &[u8]) -> Result<(Self, usize)> {
                Self::read_framed(data, 0)
                    .map_err(|f| f.into_error("corrupt message", Self::NAME))
            }

            /// The required fields that are absent, here and in present embedded messages, named
            /// as Java's `missingFields()` names them (e.g. `"destination.name"`).
            pub fn missing_fields(&self) -> Vec<String> {
                let mut out = Vec::new();
                self.missing("", &mut out);
                out
            }
        }
    };
}

// ------------------------------------------------------------------------------------------------
// The messages of journal-data.proto (ActiveMQ 6.3.1)
// ------------------------------------------------------------------------------------------------

kaha_message! {
    /// `KahaDestination`: a queue or topic by type and physical name.
    pub struct KahaDestination {
        /// `required DestinationType type = 1 [default = QUEUE]`.
        required 1 "type" dest_type: DestinationType,
        required 2 "name" name: String,
    }
}

kaha_message! {
    /// `KahaLocation`: a journal location (data file id and offset).
    pub struct KahaLocation {
        required 1 "log_id" log_id: i32,
        required 2 "offset" offset: i32,
    }
}

kaha_message! {
    /// `KahaLocalTransactionId`. Both fields are declared with field number 1 and told apart by
    /// wire type: `connection_id` is tag `0x0a`, `transaction_id` tag `0x08`.
    pub struct KahaLocalTransactionId {
        required 1 "connection_id" connection_id: String,
        required 1 "transaction_id" transaction_id: i64,
    }
}

kaha_message! {
    /// `KahaXATransactionId`: an XA transaction's `Xid`.
    pub struct KahaXATransactionId {
        required 1 "format_id" format_id: i32,
        required 2 "branch_qualifier" branch_qualifier: Vec<u8>,
        required 3 "global_transaction_id" global_transaction_id: Vec<u8>,
    }
}

kaha_message! {
    /// `KahaTransactionInfo`: the transaction a command belongs to, local or XA.
    pub struct KahaTransactionInfo {
        optional 1 "local_transaction_id" local_transaction_id: KahaLocalTransactionId,
        optional 2 "xa_transaction_id" xa_transaction_id: KahaXATransactionId,
        /// In the schema but not set by the 6.3.1 broker.
        optional 3 "previous_entry" previous_entry: KahaLocation,
    }
}

kaha_message! {
    /// `KahaTraceCommand`: a free-text marker. The broker's periodic journal sync writes one with
    /// no `message` at all.
    pub struct KahaTraceCommand {
        required 1 "message" message: String,
    }
}

kaha_message! {
    /// `KahaAddMessageCommand`: a message stored to a destination.
    pub struct KahaAddMessageCommand {
        optional 1 "transaction_info" transaction_info: KahaTransactionInfo,
        required 2 "destination" destination: KahaDestination,
        /// The producer key of the message id (`MessageId.toProducerKey()`).
        required 3 "messageId" message_id: String,
        /// The OpenWire-marshalled message, opaque here.
        required 4 "message" message: Vec<u8>,
        /// `optional int32 priority = 5 [default = 4]`.
        optional 5 "priority" priority: i32,
        optional 6 "prioritySupported" priority_supported: bool,
    }
}

kaha_message! {
    /// `KahaUpdateMessageCommand`: a stored message replaced (e.g. its redelivery count).
    pub struct KahaUpdateMessageCommand {
        required 1 "message" message: KahaAddMessageCommand,
    }
}

kaha_message! {
    /// `KahaRemoveMessageCommand`: a message acknowledged (for a topic, by one subscription).
    pub struct KahaRemoveMessageCommand {
        optional 1 "transaction_info" transaction_info: KahaTransactionInfo,
        required 2 "destination" destination: KahaDestination,
        required 3 "messageId" message_id: String,
        /// The OpenWire-marshalled `MessageAck`; present and empty for an unmatched ack.
        optional 4 "ack" ack: Vec<u8>,
        /// Set for a topic ack: `clientId + ":" + subscriptionName`.
        optional 5 "subscriptionKey" subscription_key: String,
    }
}

kaha_message! {
    /// `KahaPrepareCommand`: an XA transaction prepared.
    pub struct KahaPrepareCommand {
        required 1 "transaction_info" transaction_info: KahaTransactionInfo,
    }
}

kaha_message! {
    /// `KahaCommitCommand`: a transaction committed.
    pub struct KahaCommitCommand {
        required 1 "transaction_info" transaction_info: KahaTransactionInfo,
    }
}

kaha_message! {
    /// `KahaRollbackCommand`: a transaction rolled back.
    pub struct KahaRollbackCommand {
        required 1 "transaction_info" transaction_info: KahaTransactionInfo,
    }
}

kaha_message! {
    /// `KahaRemoveDestinationCommand`: a destination and all its messages removed.
    pub struct KahaRemoveDestinationCommand {
        required 1 "destination" destination: KahaDestination,
    }
}

kaha_message! {
    /// `KahaSubscriptionCommand`: a durable subscription added (with `subscriptionInfo`) or
    /// removed (without it).
    pub struct KahaSubscriptionCommand {
        required 1 "destination" destination: KahaDestination,
        required 2 "subscriptionKey" subscription_key: String,
        optional 3 "retroactive" retroactive: bool,
        /// The OpenWire-marshalled `SubscriptionInfo` (client id, name, selector, ...).
        optional 4 "subscriptionInfo" subscription_info: Vec<u8>,
    }
}

kaha_message! {
    /// `KahaProducerAuditCommand`: the Java-serialized producer sequence audit.
    pub struct KahaProducerAuditCommand {
        required 1 "audit" audit: Vec<u8>,
    }
}

kaha_message! {
    /// `KahaAckMessageFileMapCommand`: the Java-serialized map of which data files hold acks
    /// for messages in which other files.
    pub struct KahaAckMessageFileMapCommand {
        required 1 "ackMessageFileMap" ack_message_file_map: Vec<u8>,
    }
}

kaha_message! {
    /// `KahaRewrittenDataFileCommand`: the first record of a data file that acks were forwarded
    /// into during compaction.
    pub struct KahaRewrittenDataFileCommand {
        required 1 "sourceDataFileId" source_data_file_id: i32,
        /// The data file's type code (`COMPACTED_JOURNAL_FILE` = 1 in 6.3.1).
        optional 2 "rewriteType" rewrite_type: i32,
        optional 3 "skipIfSourceExists" skip_if_source_exists: bool,
    }
}

kaha_message! {
    /// `KahaAddScheduledJobCommand` (scheduler store): a job scheduled.
    pub struct KahaAddScheduledJobCommand {
        required 1 "scheduler" scheduler: String,
        required 2 "job_id" job_id: String,
        required 3 "start_time" start_time: i64,
        /// Empty for a job that is not a cron job.
        required 4 "cron_entry" cron_entry: String,
        required 5 "delay" delay: i64,
        required 6 "period" period: i64,
        required 7 "repeat" repeat: i32,
        required 8 "payload" payload: Vec<u8>,
        required 9 "next_execution_time" next_execution_time: i64,
    }
}

kaha_message! {
    /// `KahaRescheduleJobCommand` (scheduler store): a job's next run moved.
    pub struct KahaRescheduleJobCommand {
        required 1 "scheduler" scheduler: String,
        required 2 "job_id" job_id: String,
        required 3 "execution_time" execution_time: i64,
        required 4 "next_execution_time" next_execution_time: i64,
        required 5 "rescheduled_count" rescheduled_count: i32,
    }
}

kaha_message! {
    /// `KahaRemoveScheduledJobCommand` (scheduler store): one job removed.
    pub struct KahaRemoveScheduledJobCommand {
        required 1 "scheduler" scheduler: String,
        required 2 "job_id" job_id: String,
        required 3 "next_execution_time" next_execution_time: i64,
    }
}

kaha_message! {
    /// `KahaRemoveScheduledJobsCommand` (scheduler store): the jobs due in a time range removed.
    pub struct KahaRemoveScheduledJobsCommand {
        required 1 "scheduler" scheduler: String,
        required 2 "start_time" start_time: i64,
        required 3 "end_time" end_time: i64,
    }
}

kaha_message! {
    /// `KahaDestroySchedulerCommand` (scheduler store): a scheduler and its jobs removed.
    pub struct KahaDestroySchedulerCommand {
        required 1 "scheduler" scheduler: String,
    }
}

// ------------------------------------------------------------------------------------------------
// Convenience constructors and defaults
// ------------------------------------------------------------------------------------------------

impl KahaDestination {
    pub fn new(dest_type: DestinationType, name: impl Into<String>) -> KahaDestination {
        KahaDestination {
            dest_type: Some(dest_type),
            name: Some(name.into()),
        }
    }

    /// The type, or `QUEUE` (the proto default) when absent, as Java's `getType()` returns.
    pub fn dest_type_or_default(&self) -> DestinationType {
        self.dest_type.unwrap_or(DestinationType::Queue)
    }
}

impl KahaLocation {
    pub fn new(log_id: i32, offset: i32) -> KahaLocation {
        KahaLocation {
            log_id: Some(log_id),
            offset: Some(offset),
        }
    }
}

impl KahaLocalTransactionId {
    pub fn new(connection_id: impl Into<String>, transaction_id: i64) -> KahaLocalTransactionId {
        KahaLocalTransactionId {
            connection_id: Some(connection_id.into()),
            transaction_id: Some(transaction_id),
        }
    }
}

impl KahaXATransactionId {
    pub fn new(
        format_id: i32,
        branch_qualifier: impl Into<Vec<u8>>,
        global_transaction_id: impl Into<Vec<u8>>,
    ) -> KahaXATransactionId {
        KahaXATransactionId {
            format_id: Some(format_id),
            branch_qualifier: Some(branch_qualifier.into()),
            global_transaction_id: Some(global_transaction_id.into()),
        }
    }
}

impl KahaTransactionInfo {
    /// A local (single-connection) transaction.
    pub fn local(id: KahaLocalTransactionId) -> KahaTransactionInfo {
        KahaTransactionInfo {
            local_transaction_id: Some(id),
            ..KahaTransactionInfo::default()
        }
    }

    /// An XA transaction.
    pub fn xa(id: KahaXATransactionId) -> KahaTransactionInfo {
        KahaTransactionInfo {
            xa_transaction_id: Some(id),
            ..KahaTransactionInfo::default()
        }
    }
}

impl KahaAddMessageCommand {
    /// The proto default of `priority`.
    pub const DEFAULT_PRIORITY: i32 = 4;

    /// `priority`, or 4 when absent, as Java's `getPriority()` returns.
    pub fn priority_or_default(&self) -> i32 {
        self.priority.unwrap_or(Self::DEFAULT_PRIORITY)
    }

    /// The priority the broker indexes the message under (`MessageDatabase.upadateIndex`):
    /// `priority` if `prioritySupported`, else the JMS default 4.
    pub fn effective_priority(&self) -> i32 {
        if self.priority_supported.unwrap_or(false) {
            self.priority_or_default()
        } else {
            Self::DEFAULT_PRIORITY
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Journal commands
// ------------------------------------------------------------------------------------------------

/// One KahaDB journal user record: a command, or a record of an entry type this version does
/// not know.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[allow(clippy::large_enum_variant)] // decoded one at a time; boxing would burden every caller
pub enum JournalCommand {
    Trace(KahaTraceCommand),
    AddMessage(KahaAddMessageCommand),
    RemoveMessage(KahaRemoveMessageCommand),
    Prepare(KahaPrepareCommand),
    Commit(KahaCommitCommand),
    Rollback(KahaRollbackCommand),
    RemoveDestination(KahaRemoveDestinationCommand),
    Subscription(KahaSubscriptionCommand),
    ProducerAudit(KahaProducerAuditCommand),
    AckMessageFileMap(KahaAckMessageFileMapCommand),
    UpdateMessage(KahaUpdateMessageCommand),
    AddScheduledJob(KahaAddScheduledJobCommand),
    RescheduleJob(KahaRescheduleJobCommand),
    RemoveScheduledJob(KahaRemoveScheduledJobCommand),
    RemoveScheduledJobs(KahaRemoveScheduledJobsCommand),
    DestroyScheduler(KahaDestroySchedulerCommand),
    RewrittenDataFile(KahaRewrittenDataFileCommand),
    /// An entry type ActiveMQ 6.3.1 does not define; `payload` is everything after the type
    /// byte, unparsed, and is written back verbatim.
    Unknown {
        entry_type: u8,
        payload: Vec<u8>,
    },
}

/// Applies `$body` to the message inside any known variant, bound as `$m`, with its entry type
/// bound as `$t`; `$unknown` handles `Unknown`.
macro_rules! with_message {
    ($cmd:expr, $m:ident, $t:ident => $body:expr, $entry:ident, $payload:ident => $unknown:expr) => {
        match $cmd {
            JournalCommand::Trace($m) => {
                let $t = KahaEntryType::Trace;
                $body
            }
            JournalCommand::AddMessage($m) => {
                let $t = KahaEntryType::AddMessage;
                $body
            }
            JournalCommand::RemoveMessage($m) => {
                let $t = KahaEntryType::RemoveMessage;
                $body
            }
            JournalCommand::Prepare($m) => {
                let $t = KahaEntryType::Prepare;
                $body
            }
            JournalCommand::Commit($m) => {
                let $t = KahaEntryType::Commit;
                $body
            }
            JournalCommand::Rollback($m) => {
                let $t = KahaEntryType::Rollback;
                $body
            }
            JournalCommand::RemoveDestination($m) => {
                let $t = KahaEntryType::RemoveDestination;
                $body
            }
            JournalCommand::Subscription($m) => {
                let $t = KahaEntryType::Subscription;
                $body
            }
            JournalCommand::ProducerAudit($m) => {
                let $t = KahaEntryType::ProducerAudit;
                $body
            }
            JournalCommand::AckMessageFileMap($m) => {
                let $t = KahaEntryType::AckMessageFileMap;
                $body
            }
            JournalCommand::UpdateMessage($m) => {
                let $t = KahaEntryType::UpdateMessage;
                $body
            }
            JournalCommand::AddScheduledJob($m) => {
                let $t = KahaEntryType::AddScheduledJob;
                $body
            }
            JournalCommand::RescheduleJob($m) => {
                let $t = KahaEntryType::RescheduleJob;
                $body
            }
            JournalCommand::RemoveScheduledJob($m) => {
                let $t = KahaEntryType::RemoveScheduledJob;
                $body
            }
            JournalCommand::RemoveScheduledJobs($m) => {
                let $t = KahaEntryType::RemoveScheduledJobs;
                $body
            }
            JournalCommand::DestroyScheduler($m) => {
                let $t = KahaEntryType::DestroyScheduler;
                $body
            }
            JournalCommand::RewrittenDataFile($m) => {
                let $t = KahaEntryType::RewrittenDataFile;
                $body
            }
            JournalCommand::Unknown {
                entry_type: $entry,
                payload: $payload,
            } => $unknown,
        }
    };
}

fn decode_as<M: Message>(
    data: &[u8],
    wrap: fn(M) -> JournalCommand,
    t: KahaEntryType,
) -> Result<JournalCommand> {
    // The frame starts after the type byte, at offset 1 of the record.
    match M::read_framed(data, 1) {
        // Bytes after the frame are ignored, as MessageDatabase.load ignores them.
        Ok((m, _used)) => Ok(wrap(m)),
        Err(f) => Err(f.into_error(&format!("corrupt {t} journal record"), M::NAME)),
    }
}

impl JournalCommand {
    /// The entry-type byte of this record.
    pub fn entry_type(&self) -> u8 {
        with_message!(self, _m, t => t.as_u8(), entry_type, _p => *entry_type)
    }

    /// The entry type, unless this is an [`JournalCommand::Unknown`] record.
    pub fn known_entry_type(&self) -> Option<KahaEntryType> {
        with_message!(self, _m, t => Some(t), _e, _p => None)
    }

    /// Length of [`Self::encode`]'s output.
    pub fn encoded_len(&self) -> usize {
        with_message!(self, m, _t => {
            let n = m.body_len();
            1 + varint_len(n as u64) + n
        }, _e, payload => 1 + payload.len())
    }

    /// The record as ActiveMQ writes it: type byte, varint length, message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoded record to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        with_message!(self, m, t => {
            out.push(t.as_u8());
            m.write_framed(out);
        }, entry_type, payload => {
            out.push(*entry_type);
            out.extend_from_slice(payload);
        })
    }

    /// Decodes one journal user record (the journal record's payload, without the journal's own
    /// record header). Errors are [`ErrorCode::Corrupt`] and say what is wrong and where.
    pub fn decode(data: &[u8]) -> Result<JournalCommand> {
        let Some((&type_byte, rest)) = data.split_first() else {
            return Err(Error::new(
                ErrorCode::Corrupt,
                "corrupt journal record: empty, no entry type byte",
            ));
        };
        let Some(t) = KahaEntryType::from_u8(type_byte) else {
            return Ok(JournalCommand::Unknown {
                entry_type: type_byte,
                payload: rest.to_vec(),
            });
        };
        match t {
            KahaEntryType::Trace => decode_as(rest, JournalCommand::Trace, t),
            KahaEntryType::AddMessage => decode_as(rest, JournalCommand::AddMessage, t),
            KahaEntryType::RemoveMessage => decode_as(rest, JournalCommand::RemoveMessage, t),
            KahaEntryType::Prepare => decode_as(rest, JournalCommand::Prepare, t),
            KahaEntryType::Commit => decode_as(rest, JournalCommand::Commit, t),
            KahaEntryType::Rollback => decode_as(rest, JournalCommand::Rollback, t),
            KahaEntryType::RemoveDestination => {
                decode_as(rest, JournalCommand::RemoveDestination, t)
            }
            KahaEntryType::Subscription => decode_as(rest, JournalCommand::Subscription, t),
            KahaEntryType::ProducerAudit => decode_as(rest, JournalCommand::ProducerAudit, t),
            KahaEntryType::AckMessageFileMap => {
                decode_as(rest, JournalCommand::AckMessageFileMap, t)
            }
            KahaEntryType::UpdateMessage => decode_as(rest, JournalCommand::UpdateMessage, t),
            KahaEntryType::AddScheduledJob => decode_as(rest, JournalCommand::AddScheduledJob, t),
            KahaEntryType::RescheduleJob => decode_as(rest, JournalCommand::RescheduleJob, t),
            KahaEntryType::RemoveScheduledJob => {
                decode_as(rest, JournalCommand::RemoveScheduledJob, t)
            }
            KahaEntryType::RemoveScheduledJobs => {
                decode_as(rest, JournalCommand::RemoveScheduledJobs, t)
            }
            KahaEntryType::DestroyScheduler => decode_as(rest, JournalCommand::DestroyScheduler, t),
            KahaEntryType::RewrittenDataFile => {
                decode_as(rest, JournalCommand::RewrittenDataFile, t)
            }
        }
    }

    /// The required fields that are absent (see the module documentation), as Java's
    /// `missingFields()` names them. Empty for an `Unknown` record.
    pub fn missing_fields(&self) -> Vec<String> {
        with_message!(self, m, _t => m.missing_fields(), _e, _p => Vec::new())
    }

    /// The transaction this command belongs to, if it carries one.
    pub fn transaction_info(&self) -> Option<&KahaTransactionInfo> {
        match self {
            JournalCommand::AddMessage(c) => c.transaction_info.as_ref(),
            JournalCommand::RemoveMessage(c) => c.transaction_info.as_ref(),
            JournalCommand::Prepare(c) => c.transaction_info.as_ref(),
            JournalCommand::Commit(c) => c.transaction_info.as_ref(),
            JournalCommand::Rollback(c) => c.transaction_info.as_ref(),
            _ => None,
        }
    }
}

macro_rules! impl_from {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        $(
            impl From<$ty> for JournalCommand {
                fn from(m: $ty) -> JournalCommand {
                    JournalCommand::$variant(m)
                }
            }
        )*
    };
}

impl_from!(
    Trace(KahaTraceCommand),
    AddMessage(KahaAddMessageCommand),
    RemoveMessage(KahaRemoveMessageCommand),
    Prepare(KahaPrepareCommand),
    Commit(KahaCommitCommand),
    Rollback(KahaRollbackCommand),
    RemoveDestination(KahaRemoveDestinationCommand),
    Subscription(KahaSubscriptionCommand),
    ProducerAudit(KahaProducerAuditCommand),
    AckMessageFileMap(KahaAckMessageFileMapCommand),
    UpdateMessage(KahaUpdateMessageCommand),
    AddScheduledJob(KahaAddScheduledJobCommand),
    RescheduleJob(KahaRescheduleJobCommand),
    RemoveScheduledJob(KahaRemoveScheduledJobCommand),
    RemoveScheduledJobs(KahaRemoveScheduledJobsCommand),
    DestroyScheduler(KahaDestroySchedulerCommand),
    RewrittenDataFile(KahaRewrittenDataFileCommand),
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths_match_encodings() {
        for v in [
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u32::MAX as u64,
            i64::MAX as u64,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut r = Reader::new(&out, 0);
            assert_eq!(r.varint().ok(), Some(v));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn int32_sign_extends_and_enum_does_not() {
        assert_eq!((-1i32).value_len(), 10);
        assert_eq!(DestinationType::Unknown(-1).value_len(), 5);
    }

    #[test]
    fn bool_reads_low_32_bits_like_java() {
        // 2^32 as a varint: low 32 bits are zero.
        let mut data = Vec::new();
        put_varint(&mut data, 1 << 32);
        let mut slot = None;
        let r = &mut Reader::new(&data, 0);
        assert!(bool::merge_value(&mut slot, r).is_ok());
        assert_eq!(slot, Some(false));
    }
}
