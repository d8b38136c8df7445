package dev.kahadb;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.Objects;

/**
 * The operations of one transaction, encoded for {@link Store#commit} and {@link Store#prepare},
 * and the encoding of transaction ids. Not thread-safe.
 *
 * <p>Encoding (big-endian): int32 count, then per operation int8 kind (1 add, 2 remove); an
 * add: int8 destination type, string destination, string message id, int32 priority, int8
 * prioritized, bytes body; a remove: int8 destination type, string destination, string message
 * id, string-or-null subscription (as bytes: -1 for null), bytes-or-null ack. Strings are an
 * int32 UTF-8 length and the bytes.
 */
public final class TxOps {
    public static final int ADD = 1;
    public static final int REMOVE = 2;

    private final ByteArrayOutputStream out = new ByteArrayOutputStream();
    private int count;

    /** A transactional add. */
    public TxOps add(int kind, String destination, String messageId, int priority, boolean prioritized,
            byte[] body) {
        Objects.requireNonNull(body, "body");
        out.write(ADD);
        out.write(kind);
        string(out, destination);
        string(out, messageId);
        int32(out, priority);
        out.write(prioritized ? 1 : 0);
        bytes(out, body);
        count++;
        return this;
    }

    /**
     * A transactional queue ack ({@code subscription} null) or topic ack. {@code ack}: the
     * marshalled {@code MessageAck}, kept only for XA transactions (recovery hands it back).
     */
    public TxOps remove(int kind, String destination, String messageId, String subscription, byte[] ack) {
        out.write(REMOVE);
        out.write(kind);
        string(out, destination);
        string(out, messageId);
        bytes(out, subscription == null ? null : subscription.getBytes(StandardCharsets.UTF_8));
        bytes(out, ack);
        count++;
        return this;
    }

    public int size() {
        return count;
    }

    /** The encoded operations. */
    public byte[] toByteArray() {
        byte[] body = out.toByteArray();
        byte[] all = new byte[4 + body.length];
        all[0] = (byte) (count >>> 24);
        all[1] = (byte) (count >>> 16);
        all[2] = (byte) (count >>> 8);
        all[3] = (byte) count;
        System.arraycopy(body, 0, all, 4, body.length);
        return all;
    }

    /** A local transaction id: int8 0, string connection id, int64 value. */
    public static byte[] localTx(String connectionId, long value) {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        b.write(0);
        string(b, connectionId);
        for (int i = 7; i >= 0; i--) {
            b.write((int) (value >>> (i * 8)));
        }
        return b.toByteArray();
    }

    /** An XA transaction id: int8 1, int32 format id, bytes global transaction id, bytes branch qualifier. */
    public static byte[] xaTx(int formatId, byte[] globalTransactionId, byte[] branchQualifier) {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        b.write(1);
        int32(b, formatId);
        bytes(b, Objects.requireNonNull(globalTransactionId, "globalTransactionId"));
        bytes(b, Objects.requireNonNull(branchQualifier, "branchQualifier"));
        return b.toByteArray();
    }

    private static void int32(ByteArrayOutputStream b, int v) {
        b.write(v >>> 24);
        b.write(v >>> 16);
        b.write(v >>> 8);
        b.write(v);
    }

    private static void string(ByteArrayOutputStream b, String s) {
        bytes(b, Objects.requireNonNull(s, "string").getBytes(StandardCharsets.UTF_8));
    }

    private static void bytes(ByteArrayOutputStream b, byte[] v) {
        if (v == null) {
            int32(b, -1);
            return;
        }
        int32(b, v.length);
        b.write(v, 0, v.length);
    }
}
