package dev.kahadb.activemq.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import jakarta.jms.Connection;
import jakarta.jms.DeliveryMode;
import jakarta.jms.JMSException;
import jakarta.jms.Message;
import jakarta.jms.MessageProducer;
import jakarta.jms.Session;

import org.apache.activemq.ActiveMQConnectionFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * ZooKeeper faults and a frozen master, end to end: three HA launcher JVMs (minimumReplicas 1,
 * a 2 s ZooKeeper session, each node behind a ZooKeeper proxy of its own) under a continuous
 * numbered producer on the failover URL. Every case ends the same way: the producer stops, the
 * queue is drained from the master of the day, no acknowledged message is missing, duplicates
 * are at most the one send in flight at the failover, and no two brokers ran at once.
 */
class ClusterZooKeeperFaultsTest {
    private static final int SESSION_MS = 2000;
    private static final String QUEUE = "zk.faults";
    private static final String STALE_QUEUE = "zk.stale";

    @TempDir
    Path dir;

    // ------------------------------------------------------------------------------------------
    // a. ZooKeeper restarted under the cluster

    @Test
    void zooKeeperRestart() throws Exception {
        try (LocalCluster cluster = newCluster()) {
            Run run = new Run(cluster);
            try {
                ClusterNode m0 = run.startWithLoad("");
                long epoch0 = m0.epoch();
                long t0 = System.nanoTime();
                cluster.zookeeper().stop();
                long stopped = System.nanoTime();
                Thread.sleep(1000);
                cluster.zookeeper().start();
                long back = System.nanoTime();
                // The master may step down (it was cut off from ZooKeeper for longer than a
                // quarter of its session after it noticed) or keep its mastership; either way
                // exactly one broker serves afterwards.
                ClusterNode m1 = run.awaitSettledMaster(90_000);
                long firstAck = run.producer.firstAckAfter(back, 60_000);
                assertTrue(firstAck > 0, "a send acknowledged after ZooKeeper came back: " + run.producer.lastError());
                assertTrue(run.producer.awaitAcked(run.producer.ackedCount() + 100, 60_000),
                        "100 more acknowledged: " + run.producer.lastError());
                assertTrue(m1.epoch() >= epoch0, "the epoch never goes back: " + m1.epoch() + " < " + epoch0);
                System.out.printf("zookeeper restart: down %d ms (stop took %d ms); master %s epoch %d -> %s epoch %d; "
                        + "first ack %d ms after ZooKeeper was back, %d ms after the stop began; %s stepped down: %s%n",
                        ms(back - stopped), ms(stopped - t0), m0.name(), epoch0, m1.name(), m1.epoch(),
                        ms(firstAck - back), ms(firstAck - t0), m0.name(), m1 != m0 || m1.epoch() != epoch0);
                // A step-down and re-election is one failover at most (one send in flight).
                run.finish(m1, 1, -1, -1);
            } catch (Throwable t) {
                run.dumpLogs();
                throw t;
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // b. The master cut off from ZooKeeper

    @Test
    void masterCutOffFromZooKeeper() throws Exception {
        try (LocalCluster cluster = newCluster()) {
            Run run = new Run(cluster);
            try {
                ClusterNode m0 = run.startWithLoad("");
                long epoch0 = m0.epoch();
                Proxy proxy = cluster.zookeeperProxy(m0.index());
                long t0 = System.nanoTime();
                proxy.block();
                // It demotes itself: the broker stops well before its session can expire.
                await("the cut-off master stops its broker", 30_000, () -> !m0.brokerUp());
                long down = System.nanoTime();
                long lastAckedAtStepDown = run.producer.acked().length() - 1;
                long failedAtStepDown = run.producer.failed();
                ClusterNode m1 = cluster.awaitMaster(m0, 60_000);
                assertNotEquals(m0, m1);
                assertTrue(m1.epoch() > epoch0, "a higher epoch: " + m1.epoch() + " after " + epoch0);
                long firstAck = run.producer.firstAckAfter(down, 60_000);
                assertTrue(firstAck > 0, "sends acknowledged by the new master: " + run.producer.lastError());
                assertTrue(m0.brokerUpAt() < t0, m0.name() + " did not start a broker again while cut off");
                // Stay cut off a little longer than the session, then heal.
                Thread.sleep(SESSION_MS);
                String roleWhileCut = m0.role();
                proxy.unblock();
                long healed = System.nanoTime();
                assertTrue(m0.awaitRole("SLAVE", 60_000), m0.name() + " rejoins as a slave: " + cluster.nodes());
                assertEquals(m1.epoch(), m0.epoch(), m0.name() + " follows the new master's epoch");
                await(m0.name() + "'s link goes live", 60_000, () -> "live".equals(m0.link()));
                long live = System.nanoTime();
                assertTrue(cluster.awaitLiveSlaves(m1, 2, 60_000), "two live slaves again: " + cluster.nodes());
                assertEquals(List.of(epoch0), m0.masterEpochs(), m0.name() + " was master at its first epoch only");
                System.out.printf("master cut off: %s stopped its broker %d ms after the block (role then %s); "
                        + "%s master at epoch %d (broker up %d ms after the block, first ack %d ms); after unblock %s "
                        + "slave and live in %d ms%n",
                        m0.name(), ms(down - t0), roleWhileCut, m1.name(), m1.epoch(), ms(m1.brokerUpAt() - t0),
                        ms(firstAck - t0), m0.name(), ms(live - healed));
                run.finish(m1, 1, lastAckedAtStepDown, failedAtStepDown);
            } catch (Throwable t) {
                run.dumpLogs();
                throw t;
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // c. The master frozen (SIGSTOP) past its session

    @Test
    void frozenMasterIsFenced() throws Exception {
        try (LocalCluster cluster = newCluster()) {
            Run run = new Run(cluster);
            try {
                // Clients notice a frozen broker within 3 s (the default is 30 s, and the first
                // check of a connection comes only 10 s after it opened).
                ClusterNode m0 = run.startWithLoad(
                        "wireFormat.maxInactivityDuration=3000&wireFormat.maxInactivityDurationInitalDelay=1000");
                long epoch0 = m0.epoch();
                // Two clients of the master's own port, not failover: one sends while it is
                // frozen (in flight when it wakes), the other only after it woke.
                StaleSender inFlight = new StaleSender(m0.brokerPort(), STALE_QUEUE);
                StaleSender afterWake = new StaleSender(m0.brokerPort(), STALE_QUEUE);
                BitSet staleAcked = new BitSet();
                try {
                    // Before the freeze the master acknowledges them like any other.
                    for (int i = 0; i < 2; i++) {
                        StaleSender s = i == 0 ? inFlight : afterWake;
                        StaleSender.Attempt a = s.send(i, 30_000);
                        assertTrue(a.acked, "a send to the master before the freeze: " + a);
                        staleAcked.set(i);
                    }

                    m0.pause();
                    long paused = System.nanoTime();
                    Thread.sleep(50);
                    long lastAckedAtPause = run.producer.acked().length() - 1;
                    long failedAtPause = run.producer.failed();
                    StaleSender.Pending frozenSend = inFlight.sendInBackground(100);

                    // A new master is elected while the old one sleeps (its session expires).
                    ClusterNode m1 = cluster.awaitMaster(m0, 60_000);
                    long elected = System.nanoTime();
                    assertTrue(m1.epoch() > epoch0, "a higher epoch: " + m1.epoch() + " after " + epoch0);
                    long sleepUntil = paused + TimeUnit.MILLISECONDS.toNanos(3L * SESSION_MS);
                    if (System.nanoTime() < sleepUntil) {
                        Thread.sleep(ms(sleepUntil - System.nanoTime()));
                    }
                    assertTrue(m0.paused() && m0.alive(), "still frozen");
                    // The new master serves the failover clients while the old one sleeps, or at
                    // the latest once it woke (a reconnect may land on the frozen port first).
                    long firstAckWhilePaused = run.producer.firstAckAfter(m1.brokerUpAt(), 0);

                    m0.resume();
                    long resumed = System.nanoTime();
                    Instant resumedAt = Instant.now();
                    // Right after waking, the other client tries its luck.
                    StaleSender.Pending wokenSend = afterWake.sendInBackground(101);

                    await(m0.name() + " stops its broker on waking", 30_000, () -> !m0.brokerUp());
                    long brokerDown = System.nanoTime();
                    Instant brokerDownAt = Instant.now();

                    // Both sends end (not acknowledged) once its broker is stopped, if not before.
                    StaleSender.Attempt a1 = frozenSend.await(30_000);
                    StaleSender.Attempt a2 = wokenSend.await(30_000);
                    // And nothing listens on its port any more, or nothing acknowledges there.
                    List<StaleSender.Attempt> later = new ArrayList<>();
                    for (int seq = 102; seq < 105; seq++) {
                        later.add(StaleSender.sendOnce(m0.brokerPort(), STALE_QUEUE, seq, 10_000));
                    }
                    System.out.printf("frozen master's port after the pause: in flight %s; after waking %s; later %s%n",
                            a1, a2, later);
                    for (StaleSender.Attempt a : concat(List.of(a1, a2), later)) {
                        assertFalse(a.acked, "the fenced master acknowledged a send after the pause began: " + a);
                        assertTrue(a.done, "a send to the fenced master hung after its broker stopped: " + a);
                    }

                    assertTrue(m0.awaitRole("SLAVE", 60_000), m0.name() + " rejoins as a slave: " + cluster.nodes());
                    await(m0.name() + "'s link goes live", 60_000, () -> "live".equals(m0.link()));
                    long live = System.nanoTime();
                    assertTrue(cluster.awaitLiveSlaves(m1, 2, 60_000), "two live slaves again: " + cluster.nodes());
                    assertEquals(m1, cluster.awaitMaster(null, 10_000), "the new master still serves");
                    assertEquals(List.of(epoch0), m0.masterEpochs(), m0.name() + " never started its broker again");

                    // The old master is frozen once its broker is up: later acknowledgements are the new one's.
                    long firstAck = run.producer.firstAckAfter(m1.brokerUpAt(), 60_000);
                    assertTrue(firstAck > 0, "the failover clients are served again: " + run.producer.lastError());
                    System.out.printf("frozen master: %s paused %d ms; %s master at epoch %d, broker up %d ms after "
                            + "the pause; its first ack %d ms after the pause (%s while paused); on waking %s stopped "
                            + "its broker in %d ms, slave and live %d ms after waking%n",
                            m0.name(), ms(resumed - paused), m1.name(), m1.epoch(), ms(m1.brokerUpAt() - paused),
                            ms(firstAck - paused), firstAckWhilePaused > 0 ? "one came" : "none came", m0.name(),
                            ms(brokerDown - resumed), ms(live - resumed));
                    assertTrue(elected < resumed, "elected while the old master slept");

                    // Between SIGCONT and the old master's step-down both brokers exist: the old
                    // one cannot acknowledge anything (checked above); any other moment with two
                    // brokers is a split brain.
                    run.allowSplitBrainWhileWaking(m0, resumedAt, brokerDownAt, ms(brokerDown - resumed));
                    run.finish(m1, 1, lastAckedAtPause, failedAtPause);

                    // The stale queue on the new master holds exactly what the old one
                    // acknowledged before the freeze: no unacknowledged stale write leaked in.
                    NumberedConsumer stale = new NumberedConsumer().drain(cluster.failoverUrl(), STALE_QUEUE, 2000, 60_000);
                    System.out.printf("stale queue on the new master: %s (acknowledged before the pause: %s)%n",
                            stale.received(), staleAcked);
                    assertEquals(staleAcked, stale.received(), "the stale queue holds the acknowledged sends only");
                } finally {
                    inFlight.close();
                    afterWake.close();
                }
            } catch (Throwable t) {
                run.dumpLogs();
                throw t;
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // Support

    private LocalCluster newCluster() throws IOException {
        LocalCluster.Options o = new LocalCluster.Options().nodes(3).minimumReplicas(1).sessionTimeoutMs(SESSION_MS)
                .zookeeperProxies(true);
        return new LocalCluster(dir, LocalCluster.findProjectRoot(), o);
    }

    private static long ms(long nanos) {
        return TimeUnit.NANOSECONDS.toMillis(nanos);
    }

    private static <T> List<T> concat(List<T> a, List<T> b) {
        List<T> all = new ArrayList<>(a);
        all.addAll(b);
        return all;
    }

    static void await(String what, long timeoutMs, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                fail("timed out after " + timeoutMs + " ms waiting until " + what);
            }
            Thread.sleep(10);
        }
    }

    /** One case: the cluster, its producer, and the checks every case ends with. */
    private static final class Run {
        final LocalCluster cluster;
        NumberedProducer producer;
        String url;
        /** Split-brain samples explained by a frozen master that had not yet noticed it woke. */
        private Instant wakeFrom;
        private Instant wakeTo;
        private ClusterNode waking;

        Run(LocalCluster cluster) {
            this.cluster = cluster;
        }

        /** Starts the cluster, waits for a master with two live slaves and 200 acknowledged sends. */
        ClusterNode startWithLoad(String tcpOptions) throws Exception {
            cluster.start();
            cluster.watchForSplitBrain();
            ClusterNode m = cluster.awaitMaster(null, 120_000);
            assertTrue(cluster.awaitLiveSlaves(m, 2, 60_000), "two live slaves: " + cluster.nodes());
            url = cluster.failoverUrl(tcpOptions);
            producer = new NumberedProducer(url, QUEUE, 100, 0).start();
            assertTrue(producer.awaitAcked(200, 60_000), "200 acknowledged: " + producer.lastError());
            assertEquals(m, cluster.awaitMaster(null, 1000));
            return m;
        }

        /** Waits until one master runs its broker with two live slaves, and stays the one. */
        ClusterNode awaitSettledMaster(long timeoutMs) throws InterruptedException {
            long deadline = System.currentTimeMillis() + timeoutMs;
            while (true) {
                ClusterNode m = cluster.awaitMaster(null, Math.max(1, deadline - System.currentTimeMillis()));
                if (cluster.awaitLiveSlaves(m, 2, Math.max(1, deadline - System.currentTimeMillis()))
                        && m.brokerUp() && "MASTER".equals(m.role())) {
                    return m;
                }
                if (System.currentTimeMillis() > deadline) {
                    fail("no settled master within " + timeoutMs + " ms: " + cluster.nodes());
                }
            }
        }

        void allowSplitBrainWhileWaking(ClusterNode node, Instant from, Instant to, long windowMs) {
            this.waking = node;
            this.wakeFrom = from;
            this.wakeTo = to.plusMillis(100);
            System.out.printf("the woken master's broker stopped %d ms after SIGCONT%n", windowMs);
            assertTrue(windowMs < 10_000, "the woken master took " + windowMs + " ms to stop its broker");
        }

        /**
         * Stops the producer, drains the queue from the master, and checks: nothing acknowledged
         * is missing, no split brain, and at most {@code maxFailovers} duplicates, each of them
         * the send in flight at the failover when {@code lastAckedAtFault} is known (not -1).
         */
        void finish(ClusterNode master, int maxFailovers, long lastAckedAtFault, long failedAtFault) throws Exception {
            producer.stop(30_000);
            BitSet acked = producer.acked();
            NumberedConsumer d = new NumberedConsumer().drain(url, QUEUE, 3000, 120_000);
            List<Integer> missing = NumberedProducer.missing(acked, d.received(), 20);
            List<String> splits = new ArrayList<>();
            int explained = 0;
            for (String s : cluster.splitBrains()) {
                if (waking != null && isWakeSample(s)) {
                    explained++;
                } else {
                    splits.add(s);
                }
            }
            // A send that failed (an error, not an acknowledgement) may still have been stored.
            BitSet failedButStored = d.received();
            failedButStored.andNot(acked);
            System.out.printf("%s: attempted %d acknowledged %d failed %d (last error: %s); received %d distinct, %d "
                    + "messages, duplicates %s (redelivered %d), failed sends stored anyway %s; split-brain samples %d "
                    + "(%d while the frozen master woke)%n",
                    master.name(), producer.attempted(), acked.cardinality(), producer.failed(),
                    producer.failed() == 0 ? "none" : producer.lastError(), d.received().cardinality(), d.messages(),
                    d.duplicateNumbers(), d.redeliveredDuplicates(), failedButStored, splits.size() + explained, explained);
            assertEquals(List.of(), missing, "acknowledged messages lost");
            assertEquals(List.of(), splits, "two brokers ran at once");
            assertTrue(d.duplicates() <= maxFailovers, "at most one duplicate per failover (the send in flight): "
                    + d.duplicateNumbers());
            if (lastAckedAtFault >= 0) {
                long lastInFlight = lastAckedAtFault + 1 + (producer.failed() - failedAtFault);
                for (int seq : d.duplicateNumbers()) {
                    assertTrue(seq > lastAckedAtFault && seq <= lastInFlight, "duplicate " + seq
                            + " is not the send in flight at the fault (" + (lastAckedAtFault + 1) + ".." + lastInFlight
                            + ")");
                }
            }
            assertTrue(d.received().cardinality() >= acked.cardinality());
        }

        private boolean isWakeSample(String sample) {
            int sp = sample.indexOf(' ');
            Instant at = Instant.parse(sample.substring(0, sp));
            return !at.isBefore(wakeFrom) && !at.isAfter(wakeTo) && sample.contains(waking.name() + "[");
        }

        /** On a failure: the tail of every node's log, ZooKeeper's, into the test's output. */
        void dumpLogs() {
            for (ClusterNode n : cluster.nodes()) {
                tail(n.logFile(), 80);
            }
            System.out.println("nodes: " + cluster.nodes() + "; split brains: " + cluster.splitBrains());
        }

        private static void tail(Path file, int lines) {
            try {
                List<String> all = Files.readAllLines(file, StandardCharsets.UTF_8);
                System.out.println("---- " + file.getFileName() + " (last " + lines + " lines)");
                all.subList(Math.max(0, all.size() - lines), all.size()).forEach(System.out::println);
            } catch (IOException e) {
                System.out.println("---- " + file.getFileName() + ": " + e);
            }
        }
    }

    /**
     * A client of one broker port only (plain tcp, no failover): numbered persistent sends, each
     * recorded with what came of it.
     */
    static final class StaleSender implements AutoCloseable {
        /** What one send did. */
        static final class Attempt {
            final int seq;
            final boolean done;
            final boolean acked;
            final String error;
            final long millis;

            Attempt(int seq, boolean done, boolean acked, String error, long millis) {
                this.seq = seq;
                this.done = done;
                this.acked = acked;
                this.error = error;
                this.millis = millis;
            }

            @Override
            public String toString() {
                return "#" + seq + (acked ? " ACKNOWLEDGED" : done ? " failed" : " hung") + " after " + millis + " ms"
                        + (error == null ? "" : " (" + error + ")");
            }
        }

        /** A send on a thread of its own. */
        static final class Pending {
            private final Thread thread;
            private volatile Attempt result;
            private final int seq;
            private final long start = System.nanoTime();

            Pending(int seq, java.util.function.Supplier<Attempt> send) {
                this.seq = seq;
                this.thread = new Thread(() -> result = send.get(), "stale send " + seq);
                this.thread.setDaemon(true);
                this.thread.start();
            }

            Attempt await(long timeoutMs) throws InterruptedException {
                thread.join(timeoutMs);
                Attempt a = result;
                return a != null ? a : new Attempt(seq, false, false, null, ms(System.nanoTime() - start));
            }
        }

        private final Connection connection;
        private final MessageProducer producer;
        private final Session session;

        StaleSender(int port, String queue) throws JMSException {
            ActiveMQConnectionFactory f = new ActiveMQConnectionFactory("tcp://127.0.0.1:" + port);
            f.setWatchTopicAdvisories(false);
            f.setAlwaysSyncSend(true);
            connection = f.createConnection();
            connection.start();
            session = connection.createSession(false, Session.AUTO_ACKNOWLEDGE);
            producer = session.createProducer(session.createQueue(queue));
            producer.setDeliveryMode(DeliveryMode.PERSISTENT);
        }

        Attempt send(int seq, long timeoutMs) throws InterruptedException {
            return sendInBackground(seq).await(timeoutMs);
        }

        Pending sendInBackground(int seq) {
            return new Pending(seq, () -> {
                long t = System.nanoTime();
                try {
                    Message m = session.createTextMessage("stale " + seq);
                    m.setIntProperty(NumberedProducer.SEQ, seq);
                    producer.send(m);
                    return new Attempt(seq, true, true, null, ms(System.nanoTime() - t));
                } catch (JMSException | RuntimeException e) {
                    return new Attempt(seq, true, false, e.toString(), ms(System.nanoTime() - t));
                }
            });
        }

        /** A fresh connection to {@code port} and one send. */
        static Attempt sendOnce(int port, String queue, int seq, long timeoutMs) throws InterruptedException {
            long t = System.nanoTime();
            StaleSender s;
            try {
                s = new StaleSender(port, queue);
            } catch (JMSException | RuntimeException e) {
                return new Attempt(seq, true, false, "no connection: " + e, ms(System.nanoTime() - t));
            }
            try {
                return s.send(seq, timeoutMs);
            } finally {
                s.close();
            }
        }

        @Override
        public void close() {
            try {
                connection.close();
            } catch (JMSException | RuntimeException e) {
                // the broker is gone
            }
        }
    }
}
