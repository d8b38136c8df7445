package dev.kahadb.activemq;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;

/** Reads the packed results of {@link dev.kahadb.Store} (big-endian, length-prefixed strings and bytes). */
final class Packed {
    private final ByteBuffer buf;

    Packed(byte[] data) {
        this.buf = ByteBuffer.wrap(data);
    }

    boolean hasRemaining() {
        return buf.hasRemaining();
    }

    int int8() {
        return buf.get();
    }

    int int32() {
        return buf.getInt();
    }

    long int64() {
        return buf.getLong();
    }

    /** An int32 length and that many bytes; null for length -1. */
    byte[] bytes() {
        int len = buf.getInt();
        if (len < 0) {
            return null;
        }
        byte[] out = new byte[len];
        buf.get(out);
        return out;
    }

    /** An int32 length and UTF-8; null for length -1. */
    String string() {
        int len = buf.getInt();
        if (len < 0) {
            return null;
        }
        String s = new String(buf.array(), buf.arrayOffset() + buf.position(), len, StandardCharsets.UTF_8);
        buf.position(buf.position() + len);
        return s;
    }
}
