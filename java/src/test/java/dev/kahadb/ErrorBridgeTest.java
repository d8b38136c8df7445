package dev.kahadb;

import static dev.kahadb.TestData.assertCode;
import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** Errors and panics of the native code arrive as KahaDBExceptions, and the JVM goes on. */
class ErrorBridgeTest {
    @Test
    void errorsCarryTheirCode() {
        assertDoesNotThrow(() -> Kahadb.raise(0));
        KahaDBException e = assertCode(ErrorCode.IO, () -> Kahadb.raise(1));
        assertTrue(e.getMessage().contains("simulated I/O error"), e.getMessage());
        assertCode(ErrorCode.INVALID_ARGUMENT, () -> Kahadb.raise(99));
    }

    @Test
    void panicsBecomeInternalErrors() {
        // Each prints Rust's usual "thread ... panicked at" line on stderr.
        KahaDBException e = assertCode(ErrorCode.INTERNAL, () -> Kahadb.raise(2));
        assertTrue(e.getMessage().contains("panic") && e.getMessage().contains("simulated panic"), e.getMessage());
        KahaDBException opaque = assertCode(ErrorCode.INTERNAL, () -> Kahadb.raise(3));
        assertTrue(opaque.getMessage().contains("panic"), opaque.getMessage());
        assertDoesNotThrow(() -> Kahadb.raise(0));
    }
}
