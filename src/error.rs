//! The one error table of kahadb-rs.
//!
//! Every failure in the core carries an [`ErrorCode`] and a human-readable message. The C ABI
//! returns the code as its integer value (and keeps the message as the thread's last error);
//! the JNI bridge turns it into a `dev.kahadb.KahaDBException` carrying the same code.

use std::fmt;
use std::io;

/// Result codes shared by the Rust API, the C ABI and the Java bindings.
///
/// `Ok` and `End` are not errors; every error is negative. The values are part of the C ABI and
/// of the Java API: never renumber them.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Success.
    Ok = 0,
    /// A cursor has no further record (not an error).
    End = 1,
    /// A required pointer or reference argument was null.
    NullArgument = -1,
    /// The handle was never issued by this library, or is of another type.
    InvalidHandle = -2,
    /// The handle, or the object behind it, has been closed.
    Closed = -3,
    /// An argument is out of range or inconsistent (for example a buffer length with no buffer).
    InvalidArgument = -4,
    /// A record is larger than the journal can hold in one data file.
    RecordTooLarge = -5,
    /// Empty records cannot be appended.
    EmptyRecord = -6,
    /// No record starts at the given location, or the location is malformed.
    InvalidLocation = -7,
    /// Data failed its checksum or structural checks.
    Corrupt = -8,
    /// An operating-system I/O error.
    Io = -9,
    /// The directory is locked by another journal (in this or another process).
    Locked = -10,
    /// The device is full; the affected writes failed and nothing acknowledged was lost.
    NoSpace = -11,
    /// A configuration value is invalid.
    Config = -12,
    /// An internal error (a bug): a panic was caught at the boundary, or an invariant broke.
    Internal = -13,
    /// The requested data file or object does not exist.
    NotFound = -14,
    /// The operation is not allowed in the current state (for example removing the active file).
    IllegalState = -15,
    /// A synchronous write is on this node's disk, but fewer slaves than `minimumReplicas`
    /// acknowledged it within the replication timeout: it was not acknowledged as replicated.
    ReplicationTimeout = -16,
}

impl ErrorCode {
    /// All codes, in declaration order.
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::Ok,
        ErrorCode::End,
        ErrorCode::NullArgument,
        ErrorCode::InvalidHandle,
        ErrorCode::Closed,
        ErrorCode::InvalidArgument,
        ErrorCode::RecordTooLarge,
        ErrorCode::EmptyRecord,
        ErrorCode::InvalidLocation,
        ErrorCode::Corrupt,
        ErrorCode::Io,
        ErrorCode::Locked,
        ErrorCode::NoSpace,
        ErrorCode::Config,
        ErrorCode::Internal,
        ErrorCode::NotFound,
        ErrorCode::IllegalState,
        ErrorCode::ReplicationTimeout,
    ];

    /// The integer value used by the C ABI and Java.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The code for an integer value, if there is one.
    pub fn from_i32(v: i32) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.as_i32() == v)
    }

    /// A stable upper-case name, e.g. `"NO_SPACE"`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Ok => "OK",
            ErrorCode::End => "END",
            ErrorCode::NullArgument => "NULL_ARGUMENT",
            ErrorCode::InvalidHandle => "INVALID_HANDLE",
            ErrorCode::Closed => "CLOSED",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::RecordTooLarge => "RECORD_TOO_LARGE",
            ErrorCode::EmptyRecord => "EMPTY_RECORD",
            ErrorCode::InvalidLocation => "INVALID_LOCATION",
            ErrorCode::Corrupt => "CORRUPT",
            ErrorCode::Io => "IO",
            ErrorCode::Locked => "LOCKED",
            ErrorCode::NoSpace => "NO_SPACE",
            ErrorCode::Config => "CONFIG",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::IllegalState => "ILLEGAL_STATE",
            ErrorCode::ReplicationTimeout => "REPLICATION_TIMEOUT",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An error: a code from the table and a message that says what failed and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: ErrorCode,
    message: String,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
        }
    }

    /// Wraps an I/O error with what was being done, mapping a full device to `NoSpace`.
    pub fn io(context: impl fmt::Display, err: &io::Error) -> Error {
        let code = match err.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => ErrorCode::NoSpace,
            _ => ErrorCode::Io,
        };
        Error::new(code, format!("{context}: {err}"))
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code.name())
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_i32(c.as_i32()), Some(c));
        }
        let mut values: Vec<i32> = ErrorCode::ALL.iter().map(|c| c.as_i32()).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), ErrorCode::ALL.len());
        assert_eq!(ErrorCode::from_i32(12345), None);
    }

    #[test]
    fn enospc_maps_to_no_space() {
        let e = Error::io(
            "writing db-1.log",
            &io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert_eq!(e.code(), ErrorCode::NoSpace);
        assert!(e.to_string().contains("db-1.log"));
    }
}
