package dev.kahadb.bench;

import dev.kahadb.activemq.cluster.ClusterNode;
import dev.kahadb.activemq.cluster.LocalCluster;
import dev.kahadb.activemq.cluster.NumberedConsumer;
import dev.kahadb.activemq.cluster.NumberedProducer;
import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.activemq.broker.BrokerService;
import org.apache.activemq.store.SharedFileLocker;
import org.apache.activemq.store.kahadb.KahaDBPersistenceAdapter;

/**
 * The failover benchmark of {@code make bench-failover}: how long a JMS producer on a
 * {@code failover:} URL waits for its first acknowledged send after the master broker is killed
 * with SIGKILL, on a kahadb-rs cluster and on ActiveMQ Classic's own shared-storage master/slave.
 *
 * <pre>
 * driver --case kahadb-rs --rounds N --dir D [--block B] [--session-ms 4000] [--pause-ms 2] [--body 1024]
 * driver --case kahadb    --rounds N --dir D [--block B] [--lock-interval-ms 1000] [--pause-ms 2] [--body 1024]
 * broker --kahadb D --data D --port P --lock-interval-ms MS      (child: one shared-storage broker)
 * </pre>
 *
 * <ul>
 *   <li>{@code kahadb-rs}: a {@link LocalCluster} of three HA launchers (minimumReplicas 1) and a
 *       ZooKeeper server. Each round waits for a master with two live slaves, kills the master,
 *       and times, from just before the kill: the new master's election (its "became master"
 *       line), one live slave under it, its broker up, and the producer's first acknowledged
 *       send after the kill. The killed node is then started again and the round ends when
 *       the new master reports two live slaves again.
 *   <li>{@code kahadb}: two broker JVMs ({@code broker} below) on one KahaDB directory with
 *       ActiveMQ's stock {@link SharedFileLocker}: the one holding the directory's lock runs
 *       its broker, the other retries the lock every {@code --lock-interval-ms}. Each round
 *       waits for one broker up and the other waiting on the lock, kills the first, times the
 *       lock acquired, the broker up and the first acknowledged send, then starts the killed
 *       one again (it waits on the lock).
 *   <li>The same client for both: {@link NumberedProducer}, synchronous persistent sends of
 *       {@code --body} bytes with {@code --pause-ms} between them, on a failover URL that lists
 *       both (all) brokers and reconnects after 50 ms, then at most every 100 ms.
 *   <li>At the end the producer stops, the queue is drained through the same URL, and every
 *       acknowledged number must have arrived.
 * </ul>
 *
 * One JSON line per round and one summary line go to standard output; progress goes to
 * standard error.
 */
public final class FailoverBench {
    static final String QUEUE = "bench.failover";
    static final long WAIT_MS = 120_000;

    private FailoverBench() {
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> a = new HashMap<>();
        for (int i = 1; i + 1 < args.length; i += 2) {
            a.put(args[i].replaceFirst("^--", ""), args[i + 1]);
        }
        if (args.length > 0 && args[0].equals("broker")) {
            sharedStorageBroker(a);
        } else if (args.length > 0 && args[0].equals("driver")) {
            int status;
            try {
                status = driver(a);
            } catch (Exception | Error e) {
                e.printStackTrace();
                status = 1;
            }
            // ActiveMQ's client leaves non-daemon threads behind.
            System.exit(status);
        } else {
            System.err.println("usage: FailoverBench driver --case kahadb-rs|kahadb --rounds N --dir D ... | broker ...");
            System.exit(2);
        }
    }

    // ------------------------------------------------------------------------------------------
    // The reference's broker (child JVM)

    /** ActiveMQ's stock shared-file locker; it only says when it holds the lock. */
    static final class ReportingLocker extends SharedFileLocker {
        private final PrintStream out;

        ReportingLocker(PrintStream out) {
            this.out = out;
        }

        @Override
        public void doStart() throws Exception {
            super.doStart();
            out.println("{\"event\":\"locked\"}");
        }
    }

    static void sharedStorageBroker(Map<String, String> a) throws Exception {
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        KahaDBPersistenceAdapter kahadb = new KahaDBPersistenceAdapter();
        kahadb.setDirectory(new File(a.get("kahadb")));
        // The locker takes its directory from the adapter when it is set: directory first.
        ReportingLocker locker = new ReportingLocker(out);
        locker.setLockAcquireSleepInterval(Long.parseLong(a.get("lock-interval-ms")));
        kahadb.setLocker(locker);
        BrokerService broker = new BrokerService();
        broker.setBrokerName(a.getOrDefault("name", "kahadb-shared"));
        broker.setUseJmx(false);
        broker.setSchedulerSupport(false);
        broker.setDataDirectoryFile(new File(a.get("data")));
        broker.setPersistenceAdapter(kahadb);
        broker.addConnector("tcp://127.0.0.1:" + a.get("port"));
        out.println("{\"event\":\"starting\"}");
        // Blocks in the locker until this JVM holds the directory's lock.
        broker.start();
        if (!broker.waitUntilStarted()) {
            out.println("{\"event\":\"failed\"}");
            System.exit(1);
        }
        out.println("{\"event\":\"started\"}");
        broker.waitUntilStopped();
    }

    /** One broker JVM of the reference, followed through its output. */
    static final class SharedBroker {
        final int index;
        final Path kahadbDir;
        final Path dataDir;
        final Path log;
        final int port;
        final long lockIntervalMs;
        private Process process;
        private long generation;
        private long waitingAt;
        private long lockedAt;
        private long startedAt;

        SharedBroker(int index, Path root, Path kahadbDir, long lockIntervalMs) throws IOException {
            this.index = index;
            this.kahadbDir = kahadbDir;
            this.dataDir = root.resolve("broker" + index);
            this.log = root.resolve("broker" + index + ".log");
            this.port = LocalCluster.freePort();
            this.lockIntervalMs = lockIntervalMs;
        }

        synchronized void start() throws IOException {
            List<String> cmd = new ArrayList<>();
            cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
            // As the kahadb-rs nodes' JVMs (LocalCluster's default).
            cmd.add("-Xmx256m");
            cmd.add("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn");
            // Its "locked by another server ... waiting" line tells that it waits on the lock.
            cmd.add("-Dorg.slf4j.simpleLogger.log.org.apache.activemq.store.SharedFileLocker=info");
            cmd.add("-Dorg.slf4j.simpleLogger.showDateTime=true");
            cmd.add("-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS");
            cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), FailoverBench.class.getName(), "broker",
                    "--kahadb", kahadbDir.toString(), "--data", dataDir.toString(), "--port", Integer.toString(port),
                    "--lock-interval-ms", Long.toString(lockIntervalMs)));
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            process = p;
            waitingAt = 0;
            lockedAt = 0;
            startedAt = 0;
            long g = ++generation;
            BufferedWriter w = Files.newBufferedWriter(log, StandardCharsets.UTF_8, StandardOpenOption.CREATE,
                    StandardOpenOption.APPEND);
            Thread t = new Thread(() -> pump(p, g, w), "broker" + index + " output");
            t.setDaemon(true);
            t.start();
        }

        private void pump(Process p, long g, BufferedWriter w) {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
                    BufferedWriter log = w) {
                String line;
                while ((line = r.readLine()) != null) {
                    long now = System.nanoTime();
                    synchronized (this) {
                        if (g == generation) {
                            if (line.contains("is locked by another server") && waitingAt == 0) {
                                waitingAt = now;
                            } else if (line.contains("\"event\":\"locked\"")) {
                                lockedAt = now;
                            } else if (line.contains("\"event\":\"started\"")) {
                                startedAt = now;
                            }
                            notifyAll();
                        }
                    }
                    log.write(line);
                    log.newLine();
                    log.flush();
                }
            } catch (IOException e) {
                // the process is gone
            }
        }

        synchronized long waitingAt() {
            return waitingAt;
        }

        synchronized long lockedAt() {
            return lockedAt;
        }

        synchronized long startedAt() {
            return startedAt;
        }

        /** Waits until {@code what} (one of the getters) is set; returns it. */
        synchronized long await(java.util.function.LongSupplier what, String name, long timeoutMs)
                throws InterruptedException, IOException {
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
            while (what.getAsLong() == 0) {
                long left = deadline - System.nanoTime();
                if (left <= 0 || !process.isAlive()) {
                    throw new IOException("broker" + index + ": no '" + name + "' within " + timeoutMs + " ms (alive "
                            + process.isAlive() + "); see " + log);
                }
                TimeUnit.NANOSECONDS.timedWait(this, Math.min(left, TimeUnit.MILLISECONDS.toNanos(100)));
            }
            return what.getAsLong();
        }

        void kill() throws InterruptedException {
            Process p;
            synchronized (this) {
                p = process;
            }
            p.destroyForcibly();
            p.waitFor(30, TimeUnit.SECONDS);
        }

        void stop() throws InterruptedException {
            Process p;
            synchronized (this) {
                p = process;
            }
            if (p != null && p.isAlive()) {
                p.destroy();
                if (!p.waitFor(30, TimeUnit.SECONDS)) {
                    p.destroyForcibly();
                    p.waitFor(30, TimeUnit.SECONDS);
                }
            }
        }
    }

    // ------------------------------------------------------------------------------------------
    // The driver

    static double ms(long fromNanos, long toNanos) {
        return (toNanos - fromNanos) / 1e6;
    }

    static String loadAverage() {
        try {
            return Files.readString(Path.of("/proc/loadavg")).trim().split("\\s+")[0];
        } catch (IOException | RuntimeException e) {
            return "null";
        }
    }

    static void progress(String fmt, Object... args) {
        System.err.printf(Locale.ROOT, "bench-failover: " + fmt + "%n", args);
    }

    /** The first acknowledgement after the kill that the new master gave (not one in flight from the old one). */
    static long[] firstAck(NumberedProducer p, long killAt, long electedAt) throws InterruptedException, IOException {
        long ack = p.firstAckAfter(killAt, WAIT_MS);
        long stale = 0;
        if (ack >= 0 && ack < electedAt) {
            // Sent by the old master before it died and read by the client after the kill.
            stale = 1;
            ack = p.firstAckAfter(electedAt, WAIT_MS);
        }
        if (ack < 0) {
            throw new IOException("no send acknowledged within " + WAIT_MS + " ms of the kill: " + p.lastError());
        }
        return new long[] {ack, stale};
    }

    static int driver(Map<String, String> a) throws Exception {
        String kase = a.get("case");
        int rounds = Integer.parseInt(a.getOrDefault("rounds", "10"));
        int block = Integer.parseInt(a.getOrDefault("block", "1"));
        Path dir = Path.of(a.get("dir")).toAbsolutePath();
        int pauseMs = Integer.parseInt(a.getOrDefault("pause-ms", "2"));
        int body = Integer.parseInt(a.getOrDefault("body", "1024"));
        BrokerBench.deleteTree(dir);
        Files.createDirectories(dir);
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        String head = String.format(Locale.ROOT, "{\"case\":\"%s\",\"block\":%d,\"pause_ms\":%d,\"body_bytes\":%d", kase,
                block, pauseMs, body);
        long t0 = System.nanoTime();
        Summary s;
        switch (kase) {
            case "kahadb-rs" -> s = ours(a, rounds, dir, pauseMs, body, out, head);
            case "kahadb" -> s = reference(a, rounds, dir, pauseMs, body, out, head);
            default -> throw new IllegalArgumentException("unknown case " + kase);
        }
        List<Integer> lost = NumberedProducer.missing(s.acked, s.consumer.received(), 20);
        int lostCount = NumberedProducer.missing(s.acked, s.consumer.received(), Integer.MAX_VALUE).size();
        out.printf(Locale.ROOT,
                "%s,\"summary\":true,\"rounds\":%d,\"%s\":%d,\"acked\":%d,\"attempted\":%d,\"failed_sends\":%d,"
                        + "\"received\":%d,\"messages\":%d,\"duplicates\":%d,\"redelivered_duplicates\":%d,"
                        + "\"lost\":%d,\"lost_examples\":%s,\"split_brains\":%s,\"seconds\":%.1f}%n",
                head, rounds, s.settingName, s.setting, s.acked.cardinality(), s.attempted, s.failed,
                s.consumer.received().cardinality(), s.consumer.messages(), s.consumer.duplicates(),
                s.consumer.redeliveredDuplicates(), lostCount, lost, s.splitBrains, (System.nanoTime() - t0) / 1e9);
        progress("%s: %d acknowledged, %d received, %d lost, %d duplicates", kase, s.acked.cardinality(),
                s.consumer.received().cardinality(), lostCount, s.consumer.duplicates());
        BrokerBench.deleteTree(dir);
        return 0;
    }

    /** What the end of a case found. */
    record Summary(String settingName, long setting, BitSet acked, long attempted, long failed, NumberedConsumer consumer,
            Integer splitBrains) {
    }

    static Summary ours(Map<String, String> a, int rounds, Path dir, int pauseMs, int body, PrintStream out, String head)
            throws Exception {
        int sessionMs = Integer.parseInt(a.getOrDefault("session-ms", "4000"));
        LocalCluster.Options o = new LocalCluster.Options().nodes(3).minimumReplicas(1).sessionTimeoutMs(sessionMs);
        try (LocalCluster cluster = new LocalCluster(dir, LocalCluster.findProjectRoot(), o)) {
            progress("kahadb-rs: starting ZooKeeper and 3 nodes (session timeout %d ms)", sessionMs);
            cluster.start();
            cluster.watchForSplitBrain();
            ClusterNode master = cluster.awaitMaster(null, WAIT_MS);
            if (!cluster.awaitLiveSlaves(master, 2, WAIT_MS)) {
                throw new IOException("no two live slaves: " + cluster.nodes());
            }
            String url = cluster.failoverUrl();
            NumberedProducer p = new NumberedProducer(url, QUEUE, body, pauseMs).start();
            if (!p.awaitAcked(200, WAIT_MS)) {
                throw new IOException("the producer got no 200 acknowledgements: " + p.lastError());
            }
            for (int round = 1; round <= rounds; round++) {
                master = cluster.awaitMaster(null, WAIT_MS);
                if (!cluster.awaitLiveSlaves(master, 2, WAIT_MS)) {
                    throw new IOException("no two live slaves: " + cluster.nodes());
                }
                // Sends flow to this master with both slaves live.
                if (!p.awaitAcked(p.ackedCount() + 50, WAIT_MS)) {
                    throw new IOException("sends stalled before the kill: " + p.lastError());
                }
                String load = loadAverage();
                long killAt = System.nanoTime();
                master.kill();
                long killedAt = System.nanoTime();
                // The new master's election: a node that logs "became master" (polled).
                ClusterNode next = null;
                long electedAt = 0;
                long slaveLiveAt = 0;
                long deadline = killAt + TimeUnit.MILLISECONDS.toNanos(WAIT_MS);
                while (next == null || slaveLiveAt == 0) {
                    long now = System.nanoTime();
                    if (next == null) {
                        for (ClusterNode n : cluster.nodes()) {
                            if (n != master && n.role().equals("MASTER")) {
                                next = n;
                                electedAt = now;
                            }
                        }
                    }
                    if (next != null && slaveLiveAt == 0 && next.liveSlaves() >= 1) {
                        slaveLiveAt = now;
                    }
                    if (now > deadline) {
                        throw new IOException("no new master with a live slave within " + WAIT_MS + " ms: " + cluster.nodes());
                    }
                    Thread.sleep(1);
                }
                ClusterNode up = cluster.awaitMaster(master, WAIT_MS);
                if (up != next) {
                    throw new IOException("elected " + next + " but the broker runs on " + up);
                }
                long[] ack = firstAck(p, killAt, electedAt);
                long brokerUpAt = next.brokerUpAt();
                if (!p.awaitAcked(p.ackedCount() + 20, WAIT_MS)) {
                    throw new IOException("sends stalled after the failover: " + p.lastError());
                }
                // The killed node comes back as a slave.
                long restartAt = System.nanoTime();
                master.start();
                if (!cluster.awaitLiveSlaves(next, 2, WAIT_MS)) {
                    throw new IOException("the restarted " + master.name() + " did not become a live slave: " + cluster.nodes());
                }
                long rejoinedAt = System.nanoTime();
                out.printf(Locale.ROOT,
                        "%s,\"round\":%d,\"killed\":\"%s\",\"new_master\":\"%s\",\"epoch\":%d,\"kill_ms\":%.1f,"
                                + "\"elected_ms\":%.1f,\"slave_live_ms\":%.1f,\"broker_up_ms\":%.1f,\"first_ack_ms\":%.1f,"
                                + "\"stale_ack\":%d,\"rejoin_ms\":%.1f,\"loadavg\":%s}%n",
                        head, round, master.name(), next.name(), next.epoch(), ms(killAt, killedAt), ms(killAt, electedAt),
                        ms(killAt, slaveLiveAt), ms(killAt, brokerUpAt), ms(killAt, ack[0]), ack[1],
                        ms(restartAt, rejoinedAt), load);
                progress("kahadb-rs round %d of %d: %s killed, %s master: elected %.0f ms, broker up %.0f ms, "
                        + "first ack %.0f ms; %s back as a live slave in %.0f ms (load %s)", round, rounds, master.name(),
                        next.name(), ms(killAt, electedAt), ms(killAt, brokerUpAt), ms(killAt, ack[0]), master.name(),
                        ms(restartAt, rejoinedAt), load);
            }
            p.stop(30_000);
            BitSet acked = p.acked();
            progress("kahadb-rs: draining %d acknowledged messages", acked.cardinality());
            NumberedConsumer c = new NumberedConsumer().drain(url, QUEUE, 5000, 300_000);
            return new Summary("session_timeout_ms", sessionMs, acked, p.attempted(), p.failed(), c,
                    cluster.splitBrains().size());
        }
    }

    static Summary reference(Map<String, String> a, int rounds, Path dir, int pauseMs, int body, PrintStream out,
            String head) throws Exception {
        long lockIntervalMs = Long.parseLong(a.getOrDefault("lock-interval-ms", "1000"));
        Path kahadbDir = dir.resolve("kahadb");
        Files.createDirectories(kahadbDir);
        SharedBroker[] b = {new SharedBroker(1, dir, kahadbDir, lockIntervalMs), new SharedBroker(2, dir, kahadbDir,
                lockIntervalMs)};
        try {
            progress("kahadb: starting 2 brokers on one KahaDB directory (lock retry every %d ms)", lockIntervalMs);
            b[0].start();
            b[0].await(b[0]::startedAt, "started", WAIT_MS);
            b[1].start();
            b[1].await(b[1]::waitingAt, "waiting on the lock", WAIT_MS);
            String url = LocalCluster.failoverUrl(List.of(b[0].port, b[1].port), "");
            NumberedProducer p = new NumberedProducer(url, QUEUE, body, pauseMs).start();
            if (!p.awaitAcked(200, WAIT_MS)) {
                throw new IOException("the producer got no 200 acknowledgements: " + p.lastError());
            }
            int m = 0;
            for (int round = 1; round <= rounds; round++) {
                SharedBroker master = b[m];
                SharedBroker slave = b[1 - m];
                master.await(master::startedAt, "started", WAIT_MS);
                slave.await(slave::waitingAt, "waiting on the lock", WAIT_MS);
                if (!p.awaitAcked(p.ackedCount() + 50, WAIT_MS)) {
                    throw new IOException("sends stalled before the kill: " + p.lastError());
                }
                String load = loadAverage();
                long killAt = System.nanoTime();
                master.kill();
                long killedAt = System.nanoTime();
                long lockedAt = slave.await(slave::lockedAt, "locked", WAIT_MS);
                long startedAt = slave.await(slave::startedAt, "started", WAIT_MS);
                long[] ack = firstAck(p, killAt, lockedAt);
                if (!p.awaitAcked(p.ackedCount() + 20, WAIT_MS)) {
                    throw new IOException("sends stalled after the failover: " + p.lastError());
                }
                long restartAt = System.nanoTime();
                master.start();
                long waitingAt = master.await(master::waitingAt, "waiting on the lock", WAIT_MS);
                out.printf(Locale.ROOT,
                        "%s,\"round\":%d,\"killed\":\"broker%d\",\"new_master\":\"broker%d\",\"kill_ms\":%.1f,"
                                + "\"elected_ms\":%.1f,\"broker_up_ms\":%.1f,\"first_ack_ms\":%.1f,\"stale_ack\":%d,"
                                + "\"rejoin_ms\":%.1f,\"loadavg\":%s}%n",
                        head, round, master.index, slave.index, ms(killAt, killedAt), ms(killAt, lockedAt),
                        ms(killAt, startedAt), ms(killAt, ack[0]), ack[1], ms(restartAt, waitingAt), load);
                progress("kahadb round %d of %d: broker%d killed, broker%d master: locked %.0f ms, broker up %.0f ms, "
                        + "first ack %.0f ms; broker%d back waiting on the lock in %.0f ms (load %s)", round, rounds,
                        master.index, slave.index, ms(killAt, lockedAt), ms(killAt, startedAt), ms(killAt, ack[0]),
                        master.index, ms(restartAt, waitingAt), load);
                m = 1 - m;
            }
            p.stop(30_000);
            BitSet acked = p.acked();
            progress("kahadb: draining %d acknowledged messages", acked.cardinality());
            NumberedConsumer c = new NumberedConsumer().drain(url, QUEUE, 5000, 300_000);
            return new Summary("lock_acquire_sleep_interval_ms", lockIntervalMs, acked, p.attempted(), p.failed(), c, null);
        } finally {
            for (SharedBroker x : b) {
                x.stop();
            }
        }
    }
}
