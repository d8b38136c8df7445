package dev.kahadb;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.fail;

import java.util.SplittableRandom;
import org.junit.jupiter.api.function.Executable;

/** Helpers shared by the tests. */
final class TestData {
    private TestData() {
    }

    /** A deterministic payload of {@code size} bytes, different for every {@code seed}. */
    static byte[] payload(long seed, int size) {
        byte[] b = new byte[size];
        SplittableRandom r = new SplittableRandom(seed * 0x9E3779B97F4A7C15L + size);
        for (int i = 0; i < size; i++) {
            b[i] = (byte) r.nextInt(256);
        }
        return b;
    }

    /** A size between 1 and {@code max} that varies with {@code i}. */
    static int varyingSize(int i, int max) {
        return 1 + (int) ((i * 7919L + (long) i * i * 31) % max);
    }

    /** Asserts that {@code call} throws a {@link KahaDBException} with the given code. */
    static KahaDBException assertCode(ErrorCode expected, Executable call) {
        KahaDBException e = assertThrows(KahaDBException.class, call);
        assertEquals(expected, e.getErrorCode(), () -> "unexpected code for: " + e.getMessage());
        assertEquals(expected.code(), e.getCode());
        return e;
    }

    static void assertCodeOrFail(ErrorCode expected, Throwable t) {
        if (!(t instanceof KahaDBException e)) {
            fail("expected a KahaDBException with " + expected, t);
            return;
        }
        assertEquals(expected, e.getErrorCode(), e.getMessage());
    }
}
