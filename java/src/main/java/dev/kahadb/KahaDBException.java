package dev.kahadb;

import java.io.IOException;

/**
 * A failure reported by kahadb-rs. It carries the native library's {@linkplain #getCode() integer
 * code}, also available as an {@link ErrorCode}.
 */
public class KahaDBException extends IOException {
    private static final long serialVersionUID = 1L;

    private final int code;

    /**
     * Creates an exception with a code from the {@link ErrorCode} table (the native library throws
     * it through this constructor).
     */
    public KahaDBException(int code, String message) {
        super(message);
        this.code = code;
    }

    /** Creates an exception with the given code. */
    public KahaDBException(ErrorCode code, String message) {
        this(code.code(), message);
    }

    /** The integer code, as in the native library's table. */
    public int getCode() {
        return code;
    }

    /**
     * The code as an enum.
     *
     * @return the code, or {@link ErrorCode#INTERNAL} for a value not in the table
     */
    public ErrorCode getErrorCode() {
        ErrorCode c = ErrorCode.fromCode(code);
        return c != null ? c : ErrorCode.INTERNAL;
    }

    @Override
    public String getMessage() {
        ErrorCode c = ErrorCode.fromCode(code);
        return super.getMessage() + " (" + (c != null ? c.name() : Integer.toString(code)) + ")";
    }
}
