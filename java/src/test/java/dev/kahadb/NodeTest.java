package dev.kahadb;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.BooleanSupplier;
import java.util.function.Predicate;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;

/**
 * Replication nodes from Java: two nodes in one JVM on loopback, a master with minimumReplicas 1
 * and a slave, failover and demotion, the status, REPLICATION_TIMEOUT, and misuse.
 */
class NodeTest {
    private static final Duration WAIT = Duration.ofSeconds(30);
    private static final String QUEUE = "orders";

    @TempDir
    Path dir;

    /** Ports free on the loopback address now (all found while each is held, so distinct). */
    private static int[] freePorts(int n) throws IOException {
        ServerSocket[] sockets = new ServerSocket[n];
        int[] ports = new int[n];
        try {
            for (int i = 0; i < n; i++) {
                sockets[i] = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
                ports[i] = sockets[i].getLocalPort();
            }
        } finally {
            for (ServerSocket s : sockets) {
                if (s != null) {
                    s.close();
                }
            }
        }
        return ports;
    }

    private static String uri(int port) {
        return "kdbr://127.0.0.1:" + port;
    }

    private NodeOptions options(String name, int port, int minimumReplicas) {
        return new NodeOptions().directory(dir.resolve(name)).uri(uri(port)).minimumReplicas(minimumReplicas)
                .transferSessions(2)
                .store(new StoreOptions().journal(new JournalOptions().maxFileLength(1 << 20)
                        .maxBatchSize(256 << 10).preallocation(JournalOptions.Preallocation.SPARSE)));
    }

    private static String id(int i) {
        return "ID:node-test:1:1:" + i;
    }

    private static byte[] body(int i) {
        return ("message " + i + " from the Java node test").getBytes(StandardCharsets.UTF_8);
    }

    private static void add(Store s, int i, boolean sync) throws KahaDBException {
        byte[] b = body(i);
        s.add(Store.QUEUE, QUEUE, id(i), 4, false, b, 0, b.length, sync);
    }

    private static long count(Store s) throws KahaDBException {
        return s.counts(Store.QUEUE, QUEUE, null)[0];
    }

    /** Reads the queue back and checks it holds messages 0..n-1 in order, with their bodies. */
    private static void assertMessages(Store s, int n) throws KahaDBException {
        ByteBuffer b = ByteBuffer.wrap(s.read(Store.QUEUE, QUEUE, null, 0, 0, 0, -1, Integer.MAX_VALUE,
                Integer.MAX_VALUE));
        assertEquals(n, b.getInt());
        for (int i = 0; i < n; i++) {
            assertEquals(i, b.getLong());
            b.get();
            byte[] idBytes = new byte[b.getInt()];
            b.get(idBytes);
            assertEquals(id(i), new String(idBytes, StandardCharsets.UTF_8));
            byte[] content = new byte[b.getInt()];
            b.get(content);
            assertArrayEquals(body(i), content);
        }
        assertFalse(b.hasRemaining());
    }

    private static void waitUntil(String what, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (!condition.getAsBoolean()) {
            assertTrue(System.nanoTime() < deadline, "timed out waiting for " + what);
            Thread.sleep(20);
        }
    }

    private static BooleanSupplier status(Node node, Predicate<NodeStatus> p) {
        return () -> {
            try {
                return p.test(node.status());
            } catch (KahaDBException e) {
                throw new AssertionError(e);
            }
        };
    }

    private static void assertCode(ErrorCode code, Executable call) {
        KahaDBException e = assertThrows(KahaDBException.class, call);
        assertEquals(code, e.getErrorCode(), e.getMessage());
    }

    @Test
    void masterSlaveFailoverAndDemotion() throws Exception {
        int[] ports = freePorts(2);
        Node a = Node.open(options("a", ports[0], 1));
        Node b = Node.open(options("b", ports[1], 1));
        try {
            assertEquals(Node.Role.STOPPED, a.role());
            assertEquals(0, a.epoch());
            assertCode(ErrorCode.ILLEGAL_STATE, a::store);

            // a: master at epoch 1; b: its slave.
            a.startMaster(1);
            assertEquals(Node.Role.MASTER, a.role());
            assertEquals(1, a.epoch());
            assertCode(ErrorCode.ILLEGAL_STATE, () -> a.startMaster(1));
            Store sa = a.store();
            b.startSlave(a.uri());
            assertEquals(Node.Role.SLAVE, b.role());
            assertCode(ErrorCode.ILLEGAL_STATE, b::store);
            assertTrue(a.waitForLiveSlaves(1, WAIT), "b becomes a live slave");

            // Synchronous writes, acknowledged by b.
            int n = 0;
            for (; n < 20; n++) {
                add(sa, n, true);
            }
            assertEquals(20, count(sa));
            NodeStatus st = a.status();
            assertEquals(Node.Role.MASTER, st.role());
            assertEquals("127.0.0.1:" + ports[0], st.node());
            assertEquals(1, st.epoch());
            assertEquals(a.uri(), st.master());
            assertEquals(1, st.minimumReplicas());
            assertEquals(NodeOptions.DEFAULT_REPLICATION_TIMEOUT_MILLIS, st.replicationTimeoutMs());
            assertEquals(1, st.liveSlaves());
            NodeStatus.Slave slave = st.slaves().get(0);
            assertEquals("127.0.0.1:" + ports[1], slave.node());
            assertEquals(NodeStatus.SlaveState.LIVE, slave.state());
            assertNotNull(slave.durable());
            assertNull(slave.reason());
            assertNull(st.link());
            assertNull(st.applied());
            assertTrue(st.position().file() >= 1 && st.position().offset() > 0, st.position().toString());
            String json = a.statusJson();
            assertTrue(json.startsWith("{\"role\":\"master\"") && json.contains("\"live_slaves\":1"), json);
            waitUntil("b's link to be live", status(b, s -> s.link() == NodeStatus.LinkState.LIVE));
            NodeStatus sb = b.status();
            assertEquals(Node.Role.SLAVE, sb.role());
            assertEquals(a.uri(), sb.master());
            assertNotNull(sb.applied());
            assertTrue(sb.slaves().isEmpty());
            waitUntil("b to hold everything",
                    status(a, s -> s.liveSlaves() == 1 && s.slaves().stream().allMatch(x -> x.lagBytes() == 0)));
            assertEquals(a.status().position(), b.status().position());

            // A second store of the same master: closing it only releases it.
            Store sa2 = a.store();
            assertEquals(20, count(sa2));
            sa2.close();
            sa2.close();
            assertTrue(sa2.isClosed());
            assertCode(ErrorCode.CLOSED, () -> count(sa2));
            add(sa, n++, true);
            assertEquals(n, count(sa));

            // Failover: a stops (its store closes under sa), b is promoted at epoch 2.
            a.stop();
            a.stop();
            assertEquals(Node.Role.STOPPED, a.role());
            assertCode(ErrorCode.CLOSED, () -> count(sa));
            assertCode(ErrorCode.CLOSED, () -> add(sa, 999, true));
            assertFalse(sa.isClosed(), "the node closed the store, not the caller");
            sa.close();
            assertCode(ErrorCode.ILLEGAL_STATE, () -> a.promote(2));
            assertCode(ErrorCode.ILLEGAL_STATE, () -> a.demote(b.uri()));
            assertCode(ErrorCode.ILLEGAL_STATE, () -> a.startMaster(0));
            b.promote(2);
            assertEquals(Node.Role.MASTER, b.role());
            assertEquals(2, b.epoch());
            assertCode(ErrorCode.ILLEGAL_STATE, () -> b.promote(3));
            Store storeB = b.store();
            assertEquals(n, count(storeB));
            assertMessages(storeB, n);

            // The old master rejoins as b's slave and learns epoch 2.
            a.startSlave(b.uri());
            assertTrue(b.waitForLiveSlaves(1, WAIT), "a becomes a live slave of b");
            waitUntil("a to learn epoch 2", () -> {
                try {
                    return a.epoch() == 2;
                } catch (KahaDBException e) {
                    throw new AssertionError(e);
                }
            });
            assertCode(ErrorCode.ILLEGAL_STATE, () -> a.startMaster(1));
            assertEquals(Node.Role.SLAVE, a.role());
            for (int i = 0; i < 5; i++) {
                add(storeB, n++, true);
            }

            // Demotion: b becomes a's slave, a is promoted at epoch 3.
            assertCode(ErrorCode.CONFIG, () -> b.demote(b.uri()));
            assertEquals(Node.Role.MASTER, b.role());
            b.demote(a.uri());
            assertEquals(Node.Role.SLAVE, b.role());
            assertCode(ErrorCode.CLOSED, () -> count(storeB));
            storeB.close();
            a.promote(3);
            assertEquals(3, a.epoch());
            try (Store again = a.store()) {
                assertMessages(again, n);
                assertTrue(a.waitForLiveSlaves(1, WAIT), "b becomes a live slave of a");
                add(again, n++, true);
                assertEquals(n, count(again));
            }
            Store last = a.store();
            a.close();
            a.close();
            assertTrue(a.isClosed());
            assertCode(ErrorCode.CLOSED, a::role);
            assertCode(ErrorCode.CLOSED, () -> count(last));
            last.close();
        } finally {
            a.close();
            b.close();
        }
    }

    @Test
    void synchronousWritesTimeOutWithoutEnoughSlaves() throws Exception {
        int[] ports = freePorts(1);
        try (Node node = Node.open(options("alone", ports[0], 1).replicationTimeout(Duration.ofMillis(200)))) {
            node.startMaster(1);
            assertEquals(200, node.status().replicationTimeoutMs());
            try (Store s = node.store()) {
                long started = System.nanoTime();
                assertCode(ErrorCode.REPLICATION_TIMEOUT, () -> add(s, 0, true));
                assertTrue(System.nanoTime() - started >= Duration.ofMillis(150).toNanos(), "the write waited");
                add(s, 1, false); // asynchronous writes never wait
                assertEquals(2, count(s), "the timed-out write is on this node's disk all the same");
                node.setReplicationTimeout(Duration.ofMillis(50));
                assertCode(ErrorCode.REPLICATION_TIMEOUT, () -> add(s, 2, true));
                node.setMinimumReplicas(0);
                assertEquals(0, node.status().minimumReplicas());
                add(s, 3, true);
                assertEquals(4, count(s));
                node.setMinimumReplicas(1);
                assertTrue(node.waitForLiveSlaves(0, Duration.ZERO));
                assertFalse(node.waitForLiveSlaves(1, Duration.ofMillis(50)));
            }
            assertCode(ErrorCode.INVALID_ARGUMENT, () -> node.setMinimumReplicas(-1));
            assertCode(ErrorCode.INVALID_ARGUMENT, () -> node.setReplicationTimeout(Duration.ofMillis(-1)));
            assertCode(ErrorCode.INVALID_ARGUMENT, () -> node.waitForLiveSlaves(-1, Duration.ZERO));
        }
    }

    @Test
    void statusOfAStoppedNode() throws Exception {
        int[] ports = freePorts(1);
        try (Node node = Node.open(options("stopped", ports[0], 2).cluster("blue"))) {
            NodeStatus st = node.status();
            assertEquals(Node.Role.STOPPED, st.role());
            assertEquals("127.0.0.1:" + ports[0], st.node());
            assertEquals(0, st.epoch());
            assertNull(st.master());
            assertEquals(new NodeStatus.Position(0, 0), st.position());
            assertEquals(2, st.minimumReplicas());
            assertTrue(st.slaves().isEmpty());
            assertEquals(0, st.liveSlaves());
            assertNull(st.link());
            assertNull(st.applied());
            assertNull(st.lastError());
            assertTrue(node.statusJson().contains("\"role\":\"stopped\""));
            assertFalse(node.waitForLiveSlaves(0, Duration.ZERO), "a stopped node is not master");
        }
    }

    @Test
    void malformedStatusBytesAreRefused() throws Exception {
        int[] ports = freePorts(1);
        byte[] good;
        try (Node node = Node.open(options("decode", ports[0], 0))) {
            good = node.statusBytes();
        }
        assertEquals(Node.Role.STOPPED, NodeStatus.decode(good).role());
        List<byte[]> bad = new ArrayList<>();
        bad.add(Arrays.copyOf(good, good.length - 1));
        bad.add(Arrays.copyOf(good, good.length + 1));
        byte[] role = good.clone();
        role[0] = 3;
        bad.add(role);
        bad.add(new byte[0]);
        for (byte[] b : bad) {
            assertCode(ErrorCode.INTERNAL, () -> NodeStatus.decode(b));
        }
    }

    @Test
    void misuseIsReported() throws Exception {
        int[] ports = freePorts(1);
        assertThrows(NullPointerException.class, () -> Node.open(null));
        assertThrows(NullPointerException.class, () -> Node.open(new NodeOptions().uri(uri(ports[0]))));
        assertThrows(NullPointerException.class, () -> Node.open(new NodeOptions().directory(dir)));
        for (String bad : List.of("http://127.0.0.1:1", "kdbr://127.0.0.1", "kdbr://127.0.0.1:99999", "")) {
            assertCode(ErrorCode.CONFIG, () -> Node.open(options("bad", ports[0], 0).uri(bad)).close());
        }
        assertCode(ErrorCode.CONFIG, () -> Node.open(options("bad", ports[0], 0).transferSessions(0)).close());
        assertCode(ErrorCode.CONFIG, () -> Node.open(options("bad", ports[0], 0).cluster("")).close());
        assertCode(ErrorCode.CONFIG, () -> Node.open(options("bad", ports[0], -1)).close());
        assertCode(ErrorCode.CONFIG, () -> Node.open(options("bad", ports[0], 0).replicationTimeoutMillis(-1)).close());
        NodeOptions wipe = options("bad", ports[0], 0);
        wipe.store().deleteAllMessages(true);
        assertCode(ErrorCode.CONFIG, () -> Node.open(wipe).close());

        Node node = Node.open(options("misuse", ports[0], 0));
        assertCode(ErrorCode.CONFIG, () -> node.startSlave(node.uri()));
        assertCode(ErrorCode.CONFIG, () -> node.startSlave("tcp://127.0.0.1:61616"));
        assertThrows(NullPointerException.class, () -> node.startSlave(null));
        assertEquals(Node.Role.STOPPED, node.role());
        assertCode(ErrorCode.ILLEGAL_STATE, node::store);
        assertCode(ErrorCode.ILLEGAL_STATE, () -> node.promote(1));
        assertCode(ErrorCode.ILLEGAL_STATE, () -> node.demote(uri(1)));
        assertCode(ErrorCode.INVALID_ARGUMENT, () -> node.startMaster(-1));

        // Stale epochs, and the epoch surviving a restart.
        node.startMaster(5);
        assertCode(ErrorCode.LOCKED, () -> Store.open(node.directory(), new StoreOptions()).close());
        node.stop();
        assertCode(ErrorCode.ILLEGAL_STATE, () -> node.startMaster(4));
        assertEquals(5, node.epoch());
        node.close();
        try (Node again = Node.open(options("misuse", ports[0], 0))) {
            assertEquals(5, again.epoch());
            assertCode(ErrorCode.ILLEGAL_STATE, () -> again.startMaster(4));
        }

        // An address in use.
        try (ServerSocket busy = new ServerSocket(0, 1, InetAddress.getLoopbackAddress());
                Node blocked = Node.open(options("busy", busy.getLocalPort(), 0))) {
            assertTrue(busy.isBound());
            assertCode(ErrorCode.IO, () -> blocked.startMaster(1));
            assertEquals(Node.Role.STOPPED, blocked.role());
            assertEquals(0, blocked.epoch());
        }

        // A closed node.
        node.close();
        assertTrue(node.isClosed());
        assertCode(ErrorCode.CLOSED, () -> node.startMaster(6));
        assertCode(ErrorCode.CLOSED, () -> node.startSlave(uri(1)));
        assertCode(ErrorCode.CLOSED, () -> node.promote(6));
        assertCode(ErrorCode.CLOSED, () -> node.demote(uri(1)));
        assertCode(ErrorCode.CLOSED, node::stop);
        assertCode(ErrorCode.CLOSED, node::role);
        assertCode(ErrorCode.CLOSED, node::epoch);
        assertCode(ErrorCode.CLOSED, node::status);
        assertCode(ErrorCode.CLOSED, node::statusJson);
        assertCode(ErrorCode.CLOSED, () -> node.setMinimumReplicas(1));
        assertCode(ErrorCode.CLOSED, () -> node.setReplicationTimeout(Duration.ofSeconds(1)));
        assertCode(ErrorCode.CLOSED, () -> node.waitForLiveSlaves(1, Duration.ZERO));
        assertCode(ErrorCode.CLOSED, node::store);
    }
}
