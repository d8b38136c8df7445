package dev.kahadb;

/**
 * The result codes of kahadb-rs, identical to the native library's table (names and values).
 *
 * <p>{@link #OK} and {@link #END} are not errors; every error code is negative.
 */
public enum ErrorCode {
    /** Success. */
    OK(0),
    /** A cursor has no further record (not an error). */
    END(1),
    /** A required argument was null. */
    NULL_ARGUMENT(-1),
    /** The handle was never issued by the library, or is of another type. */
    INVALID_HANDLE(-2),
    /** The journal or cursor has been closed. */
    CLOSED(-3),
    /** An argument is out of range or inconsistent. */
    INVALID_ARGUMENT(-4),
    /** A record is larger than the journal can hold in one data file. */
    RECORD_TOO_LARGE(-5),
    /** Empty records cannot be appended. */
    EMPTY_RECORD(-6),
    /** No record starts at the given location, or the location is malformed. */
    INVALID_LOCATION(-7),
    /** Data failed its checksum or structural checks. */
    CORRUPT(-8),
    /** An operating-system I/O error. */
    IO(-9),
    /** The directory is locked by another journal, in this or another process. */
    LOCKED(-10),
    /** The device is full; the affected writes failed and nothing acknowledged was lost. */
    NO_SPACE(-11),
    /** A configuration value is invalid. */
    CONFIG(-12),
    /** An internal error (a bug in the library). */
    INTERNAL(-13),
    /** The requested data file or object does not exist. */
    NOT_FOUND(-14),
    /** The operation is not allowed in the current state. */
    ILLEGAL_STATE(-15),
    /**
     * A synchronous write reached this node's disk, but fewer slaves than {@code minimumReplicas}
     * acknowledged it within the replication timeout.
     */
    REPLICATION_TIMEOUT(-16);

    private static final ErrorCode[] BY_NEGATED_VALUE = new ErrorCode[17];

    static {
        for (ErrorCode c : values()) {
            if (c.code <= 0) {
                BY_NEGATED_VALUE[-c.code] = c;
            }
        }
    }

    private final int code;

    ErrorCode(int code) {
        this.code = code;
    }

    /** The integer value, as used by the native library and its C ABI. */
    public int code() {
        return code;
    }

    /**
     * The code with the given integer value.
     *
     * @return the code, or {@code null} when the value is not in the table
     */
    public static ErrorCode fromCode(int code) {
        if (code == 1) {
            return END;
        }
        if (code <= 0 && code > -BY_NEGATED_VALUE.length) {
            return BY_NEGATED_VALUE[-code];
        }
        return null;
    }
}
