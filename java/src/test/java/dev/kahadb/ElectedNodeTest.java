package dev.kahadb;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

import dev.kahadb.activemq.cluster.ZooKeeperServer;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Elected nodes from Java: the static elector (master at once, the store usable, close ends with
 * {@code stopped}), a listener that throws (events still arrive), misuse, and two nodes with a
 * real ZooKeeper server (one master, one slave; closing the master makes the other master).
 */
class ElectedNodeTest {
    private static final Duration WAIT = Duration.ofSeconds(30);

    @TempDir
    Path dir;

    /** One listener call, as recorded. */
    record Event(String kind, long epoch, String text, NodeStatus status, Thread thread) {
        @Override
        public String toString() {
            return kind + "(" + epoch + (text == null ? "" : ", " + text)
                    + (status == null ? "" : ", " + status.role()) + ")";
        }
    }

    /** Records every call; optionally throws from each after recording it. */
    static final class Recorder implements ElectionListener {
        private final List<Event> all = new ArrayList<>();
        private final boolean throwing;
        /** Where {@link #await} looks next. */
        private int cursor;

        Recorder(boolean throwing) {
            this.throwing = throwing;
        }

        private void record(Event e) {
            synchronized (all) {
                all.add(e);
                all.notifyAll();
            }
            if (throwing) {
                throw new IllegalStateException("a listener's bug, on " + e.kind());
            }
        }

        @Override
        public void becameMaster(long epoch) {
            record(new Event("master", epoch, null, null, Thread.currentThread()));
        }

        @Override
        public void becameSlave(String masterUri, long epoch) {
            record(new Event("slave", epoch, masterUri, null, Thread.currentThread()));
        }

        @Override
        public void statusChanged(NodeStatus status) {
            record(new Event("status", status.epoch(), null, status, Thread.currentThread()));
        }

        @Override
        public void stopped(String reason) {
            record(new Event("stopped", 0, reason, null, Thread.currentThread()));
        }

        /** Waits for the next event that matches; fails after {@link #WAIT}. */
        Event await(Predicate<Event> p, String what) throws InterruptedException {
            long deadline = System.nanoTime() + WAIT.toNanos();
            synchronized (all) {
                for (;;) {
                    while (cursor < all.size()) {
                        Event e = all.get(cursor++);
                        if (p.test(e)) {
                            return e;
                        }
                    }
                    long left = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
                    if (left <= 0) {
                        throw new AssertionError("no " + what + " within " + WAIT + "; events: " + all);
                    }
                    all.wait(left);
                }
            }
        }

        /** The first event of a kind so far, or null. */
        Event first(String kind) {
            synchronized (all) {
                return all.stream().filter(e -> e.kind().equals(kind)).findFirst().orElse(null);
            }
        }

        List<Event> snapshot() {
            synchronized (all) {
                return new ArrayList<>(all);
            }
        }
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    private NodeOptions options(String name) throws IOException {
        return new NodeOptions().directory(dir.resolve(name)).uri("kdbr://127.0.0.1:" + freePort())
                .transferSessions(2)
                .store(new StoreOptions().journal(new JournalOptions().maxFileLength(1 << 20)
                        .maxBatchSize(256 << 10).preallocation(JournalOptions.Preallocation.SPARSE)));
    }

    private static void add(Store s, int i) throws KahaDBException {
        byte[] b = ("message " + i).getBytes(StandardCharsets.UTF_8);
        s.add(Store.QUEUE, "orders", "ID:elected-test:1:1:" + i, 4, false, b, 0, b.length, true);
    }

    @Test
    void staticElectorMakesTheNodeMasterAndCloseEndsWithStopped() throws Exception {
        Recorder r = new Recorder(false);
        NodeOptions opts = options("static");
        long firstEpoch;
        ElectedNode e = ElectedNode.start(opts, new ElectionOptions(), r);
        try {
            Event m = r.await(ev -> ev.kind().equals("master"), "becameMaster");
            assertTrue(m.epoch() >= 1, "epoch " + m.epoch());
            assertNotEquals(Thread.currentThread(), m.thread(), "a dispatcher thread of its own");
            assertEquals("kahadb-election-events", m.thread().getName());
            firstEpoch = m.epoch();
            Node n = e.node();
            assertEquals(Node.Role.MASTER, n.role());
            assertEquals(m.epoch(), n.epoch());
            try (Store s = n.store()) {
                add(s, 1);
                assertEquals(1, s.counts(Store.QUEUE, "orders", null)[0]);
            }
            Event st = r.await(ev -> ev.kind().equals("status") && ev.status().role() == Node.Role.MASTER,
                    "a master status");
            assertEquals(m.epoch(), st.status().epoch());
            assertEquals(m.epoch(), st.status().lineage());
            assertEquals(m.thread(), st.thread(), "one dispatcher thread");
            e.close();
            assertTrue(e.isClosed());
            assertTrue(n.isClosed(), "the node object is closed with its election");
            assertThrows(KahaDBException.class, n::role);
        } finally {
            e.close();
        }
        List<Event> all = r.snapshot();
        assertEquals("stopped", all.get(all.size() - 1).kind(), "stopped last: " + all);
        assertEquals(1, all.stream().filter(ev -> ev.kind().equals("stopped")).count(), all.toString());
        assertEquals(1, all.stream().filter(ev -> ev.kind().equals("master")).count(), all.toString());
        assertFalse(all.stream().anyMatch(ev -> ev.kind().equals("slave")), all.toString());

        // Again on the same directory: master at a higher epoch, the message still there.
        Recorder r2 = new Recorder(false);
        try (ElectedNode e2 = ElectedNode.start(opts, new ElectionOptions(), r2)) {
            Event m = r2.await(ev -> ev.kind().equals("master"), "becameMaster after a restart");
            assertTrue(m.epoch() > firstEpoch, m.epoch() + " after " + firstEpoch);
            try (Store s = e2.node().store()) {
                assertEquals(1, s.counts(Store.QUEUE, "orders", null)[0]);
            }
        }
    }

    @Test
    void aThrowingListenerStillGetsLaterEvents() throws Exception {
        Recorder r = new Recorder(true);
        ElectedNode e = ElectedNode.start(options("throwing"), new ElectionOptions(), r);
        try {
            r.await(ev -> ev.kind().equals("master"), "becameMaster");
            r.await(ev -> ev.kind().equals("status") && ev.status().role() == Node.Role.MASTER,
                    "a status after the listener threw");
            try (Store s = e.node().store()) {
                add(s, 1);
            }
        } finally {
            e.close();
        }
        assertEquals("stopped", r.snapshot().get(r.snapshot().size() - 1).kind(), r.snapshot().toString());
    }

    @Test
    void misuse() throws Exception {
        Recorder r = new Recorder(false);
        NodeOptions opts = options("misuse");
        assertThrows(NullPointerException.class, () -> ElectedNode.start(null, new ElectionOptions(), r));
        assertThrows(NullPointerException.class, () -> ElectedNode.start(opts, null, r));
        assertThrows(NullPointerException.class, () -> ElectedNode.start(opts, new ElectionOptions(), null));
        KahaDBException bad = assertThrows(KahaDBException.class, () -> ElectedNode.start(
                opts, new ElectionOptions().zookeeper("127.0.0.1:1").path("relative"), r));
        assertEquals(ErrorCode.CONFIG, bad.getErrorCode());
        bad = assertThrows(KahaDBException.class, () -> ElectedNode.start(
                opts, new ElectionOptions().zookeeper("127.0.0.1:1").sessionTimeoutMillis(10), r));
        assertEquals(ErrorCode.CONFIG, bad.getErrorCode());
        bad = assertThrows(KahaDBException.class, () -> ElectedNode.start(
                new NodeOptions().directory(dir.resolve("bad")).uri("not-a-uri"), new ElectionOptions(), r));
        assertEquals(ErrorCode.CONFIG, bad.getErrorCode());
        assertTrue(r.snapshot().isEmpty(), "no events from failed starts: " + r.snapshot());

        ElectedNode e = ElectedNode.start(opts, new ElectionOptions(), r);
        r.await(ev -> ev.kind().equals("master"), "becameMaster");
        Node n = e.node();
        n.close();
        assertTrue(n.isClosed());
        assertThrows(KahaDBException.class, n::role);
        e.close();
        assertTrue(e.toString().contains("closed"));
    }

    // ---- Two nodes and a real ZooKeeper server ----

    /** A standalone ZooKeeper server started through {@code scripts/zookeeper.sh}. */
    private ZooKeeperServer startZooKeeper(int port) throws Exception {
        Path script = Path.of("..", "scripts", "zookeeper.sh").toAbsolutePath().normalize();
        assumeTrue(Files.isRegularFile(script), "scripts/zookeeper.sh not found");
        ZooKeeperServer zk = new ZooKeeperServer(script, dir.resolve("zookeeper"), port);
        zk.start();
        return zk;
    }

    @Test
    void twoNodesWithZooKeeperFailOverWhenTheMasterCloses() throws Exception {
        int zkPort = freePort();
        ZooKeeperServer zk = startZooKeeper(zkPort);
        try {
            ElectionOptions election = new ElectionOptions().zookeeper("127.0.0.1:" + zkPort)
                    .path("/kahadb-rs/java-test").sessionTimeoutMillis(4000);
            Recorder ra = new Recorder(false);
            Recorder rb = new Recorder(false);
            NodeOptions oa = options("a");
            NodeOptions ob = options("b");
            ElectedNode a = ElectedNode.start(oa, election, ra);
            ElectedNode b = ElectedNode.start(ob, election, rb);
            try {
                // One master, the other its slave.
                long deadline = System.nanoTime() + WAIT.toNanos();
                while (ra.first("master") == null && rb.first("master") == null) {
                    assertTrue(System.nanoTime() < deadline,
                            "no master within " + WAIT + ": " + ra.snapshot() + " / " + rb.snapshot());
                    Thread.sleep(20);
                }
                Event ma = ra.first("master");
                Event mb = rb.first("master");
                boolean aMaster = ma != null;
                ElectedNode master = aMaster ? a : b;
                ElectedNode slave = aMaster ? b : a;
                Recorder rm = aMaster ? ra : rb;
                Recorder rs = aMaster ? rb : ra;
                long epoch = aMaster ? ma.epoch() : mb.epoch();
                String masterUri = (aMaster ? oa : ob).uri();
                Event sl = rs.await(ev -> ev.kind().equals("slave"), "becameSlave");
                assertEquals(masterUri, sl.text());
                assertEquals(epoch, sl.epoch());
                rs.await(ev -> ev.kind().equals("status") && ev.status().link() == NodeStatus.LinkState.LIVE,
                        "a live link");
                rm.await(ev -> ev.kind().equals("status") && ev.status().slaves().stream()
                        .anyMatch(s -> s.state() == NodeStatus.SlaveState.LIVE), "a live slave in the master's status");
                try (Store s = master.node().store()) {
                    add(s, 1);
                }

                // The master leaves: the slave takes over at a higher epoch, with the message.
                master.close();
                assertEquals("stopped", rm.snapshot().get(rm.snapshot().size() - 1).kind());
                Event m2 = rs.await(ev -> ev.kind().equals("master"), "becameMaster after the master left");
                assertTrue(m2.epoch() > epoch, m2.epoch() + " after " + epoch);
                try (Store s = slave.node().store()) {
                    assertEquals(1, s.counts(Store.QUEUE, "orders", null)[0]);
                }
                assertNotNull(slave.node().status());
            } finally {
                a.close();
                b.close();
            }
        } finally {
            zk.close();
        }
    }

    @Test
    void optionsDefaults() {
        ElectionOptions o = new ElectionOptions();
        assertEquals(null, o.zookeeper());
        assertEquals(null, o.path());
        assertEquals(ElectionOptions.DEFAULT_SESSION_TIMEOUT_MILLIS, o.sessionTimeoutMillis());
        assertTrue(o.toString().contains("static"));
        o.zookeeper("h:1").path("/x").sessionTimeoutMillis(500);
        assertEquals("h:1", o.zookeeper());
        assertEquals("/x", o.path());
        assertEquals(500, o.sessionTimeoutMillis());
        assertEquals(null, o.zookeeper(null).zookeeper());
    }
}
