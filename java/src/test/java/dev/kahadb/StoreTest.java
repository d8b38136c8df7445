package dev.kahadb;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The low-level store binding: every native call, its packed results and its errors. */
class StoreTest {
    @TempDir
    Path dir;

    private static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static String string(ByteBuffer b) {
        byte[] v = new byte[b.getInt()];
        b.get(v);
        return new String(v, StandardCharsets.UTF_8);
    }

    private static byte[] bytes(ByteBuffer b) {
        int n = b.getInt();
        if (n < 0) {
            return null;
        }
        byte[] v = new byte[n];
        b.get(v);
        return v;
    }

    /** Sequences and bodies of a packed read result. */
    private static List<String> messages(byte[] packed) {
        ByteBuffer b = ByteBuffer.wrap(packed);
        int n = b.getInt();
        List<String> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            long seq = b.getLong();
            int lane = b.get();
            String id = string(b);
            String body = new String(bytes(b), StandardCharsets.UTF_8);
            out.add(seq + "/" + lane + "/" + id + "/" + body);
        }
        assertFalse(b.hasRemaining());
        return out;
    }

    private StoreOptions options() {
        return new StoreOptions().journal(new JournalOptions().maxFileLength(1 << 20).maxBatchSize(256 << 10));
    }

    @Test
    void queueOperationsAndRestart() throws Exception {
        try (Store s = Store.open(dir, options())) {
            for (int i = 0; i < 5; i++) {
                byte[] body = utf8("m" + i);
                assertEquals(i, s.add(Store.QUEUE, "q", "p:" + i, 4, false, body, 0, body.length, i == 4));
            }
            byte[] dup = utf8("again");
            assertEquals(-1, s.add(Store.QUEUE, "q", "p:1", 4, false, dup, 0, dup.length, true));
            assertEquals(List.of("1/1/p:1/m1", "2/1/p:2/m2"),
                    messages(s.read(Store.QUEUE, "q", null, 0, 1, 0, 3, 100, Integer.MAX_VALUE)));
            assertEquals(2, s.remove(Store.QUEUE, "q", "p:0", true));
            assertEquals(-1, s.remove(Store.QUEUE, "q", "p:0", true));
            assertArrayEquals(new long[] {4, 8}, s.counts(Store.QUEUE, "q", null));
            assertArrayEquals(utf8("m3"), s.getMessage(Store.QUEUE, "q", "p:3"));
            assertNull(s.getMessage(Store.QUEUE, "q", "p:0"));
            assertEquals(4, s.lastProducerSequence("p"));
            assertTrue(s.diskUsage() >= 1 << 20);
        }
        try (Store s = Store.open(dir, options())) {
            assertEquals(5, s.nextSequence(Store.QUEUE, "q"));
            ByteBuffer d = ByteBuffer.wrap(s.destinations());
            assertEquals(1, d.getInt());
            assertEquals(Store.QUEUE, d.get());
            assertEquals("q", string(d));
        }
        try (Store s = Store.open(dir, options().deleteAllMessages(true))) {
            assertArrayEquals(new long[] {0, 0}, s.counts(Store.QUEUE, "q", null));
        }
    }

    @Test
    void topicsAndTransactions() throws Exception {
        byte[] xa = TxOps.xaTx(7, utf8("gtid"), utf8("bq"));
        try (Store s = Store.open(dir, options())) {
            s.subscribe(Store.TOPIC, "t", "c:a", utf8("info-a"), false, true);
            s.subscribe(Store.TOPIC, "t", "c:b", utf8("info-b"), false, true);
            byte[] body = utf8("news");
            assertEquals(0, s.add(Store.TOPIC, "t", "p:0", 4, false, body, 0, body.length, false));
            assertEquals(4, s.acknowledge(Store.TOPIC, "t", "c:a", "p:0", false));
            assertEquals(4 | Store.DELETED_FLAG, s.acknowledge(Store.TOPIC, "t", "c:b", "p:0", false));
            ByteBuffer subs = ByteBuffer.wrap(s.subscriptions(Store.TOPIC, "t"));
            assertEquals(2, subs.getInt());
            assertEquals("c:a", string(subs));
            assertArrayEquals(utf8("info-a"), bytes(subs));

            long[] out = s.commit(TxOps.localTx("conn", 3),
                    new TxOps().add(Store.QUEUE, "q", "p:1", 4, false, utf8("one"))
                            .add(Store.QUEUE, "q", "p:2", 4, false, utf8("two")), true);
            assertArrayEquals(new long[] {0, 1}, out);
            s.prepare(xa, new TxOps().add(Store.QUEUE, "q", "p:3", 4, false, utf8("three"))
                    .remove(Store.QUEUE, "q", "p:1", null, utf8("ack")));
            assertArrayEquals(new long[] {2, 6}, s.counts(Store.QUEUE, "q", null), "prepared work is invisible");
        }
        try (Store s = Store.open(dir, options())) {
            ByteBuffer p = ByteBuffer.wrap(s.preparedTransactions());
            assertEquals(1, p.getInt());
            assertEquals(1, p.get());
            assertEquals(7, p.getInt());
            assertArrayEquals(utf8("gtid"), bytes(p));
            assertArrayEquals(utf8("bq"), bytes(p));
            assertEquals(2, p.getInt());
            assertArrayEquals(new long[] {2, 3 | Store.DELETED_FLAG}, s.commitPrepared(xa, true));
            assertFalse(s.rollbackPrepared(xa, true));
            assertEquals(List.of("1/1/p:2/two", "2/1/p:3/three"),
                    messages(s.read(Store.QUEUE, "q", null, 0, 0, 0, -1, 100, Integer.MAX_VALUE)));
        }
    }

    @Test
    void misuseIsReported() throws Exception {
        Store s = Store.open(dir, options());
        byte[] body = utf8("x");
        KahaDBException e = assertThrows(KahaDBException.class,
                () -> s.add(9, "q", "p:1", 4, false, body, 0, 1, false));
        assertEquals(ErrorCode.INVALID_ARGUMENT, e.getErrorCode());
        e = assertThrows(KahaDBException.class, () -> s.add(Store.QUEUE, "q", "", 4, false, body, 0, 1, false));
        assertEquals(ErrorCode.INVALID_ARGUMENT, e.getErrorCode());
        e = assertThrows(KahaDBException.class, () -> s.add(Store.QUEUE, null, "p:1", 4, false, body, 0, 1, false));
        assertEquals(ErrorCode.NULL_ARGUMENT, e.getErrorCode());
        e = assertThrows(KahaDBException.class, () -> s.commit(new byte[] {5}, new TxOps(), true));
        assertEquals(ErrorCode.INVALID_ARGUMENT, e.getErrorCode());
        e = assertThrows(KahaDBException.class, () -> s.prepare(TxOps.localTx("c", 1),
                new TxOps().add(Store.QUEUE, "q", "p:1", 4, false, body)));
        assertEquals(ErrorCode.INVALID_ARGUMENT, e.getErrorCode());
        assertThrows(IndexOutOfBoundsException.class, () -> s.add(Store.QUEUE, "q", "p:1", 4, false, body, 0, 2, false));
        e = assertThrows(KahaDBException.class, () -> Store.open(dir, options()));
        assertEquals(ErrorCode.LOCKED, e.getErrorCode());
        s.close();
        s.close();
        e = assertThrows(KahaDBException.class, () -> s.counts(Store.QUEUE, "q", null));
        assertEquals(ErrorCode.CLOSED, e.getErrorCode());
    }
}
