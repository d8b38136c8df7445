package dev.kahadb.activemq.cluster;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.StringJoiner;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * The failover demo ({@code make demo}): a ZooKeeper server and three HA launchers on loopback
 * ({@link LocalCluster}), a producer sending numbered persistent messages over a
 * {@code failover:} URL with {@code minimumReplicas} 1, the master killed with SIGKILL, a slave
 * taking over, the killed node restarted (it rejoins as a slave and catches up), and a consumer
 * draining the queue: every acknowledged message must come back.
 *
 * <pre>
 * FailoverDemo [--before N] [--after N] [--dir DIR] [--session-timeout-ms MS] [--no-restart]
 * </pre>
 *
 * Exit status: 0 when no acknowledged message was lost, 1 when some were, 2 on a usage error,
 * 3 when the demo could not run (the cluster did not come up, no master took over, ...).
 * {@link #run(Options, PrintStream)} is the demo without the process around it, for tests.
 */
public final class FailoverDemo {
    /** Exit status: a usage error. */
    public static final int EXIT_USAGE = 2;
    /** Exit status: the demo could not run to its end. */
    public static final int EXIT_FAILED = 3;

    /** Marks a directory as this demo's own, so that it may be wiped at the next start. */
    static final String MARKER = ".kahadb-failover-demo";

    private static final String QUEUE = "failover.demo";
    private static final int BODY_BYTES = 100;
    private static final int NODES = 3;

    private static final String USAGE = String.join("\n",
            "usage: FailoverDemo [options]   (make demo DEMO_ARGS=\"...\")",
            "",
            "Starts ZooKeeper and three HA nodes on this machine, sends numbered persistent messages",
            "(minimumReplicas 1) over a failover: URL, kills the master with SIGKILL, watches a slave",
            "take over, restarts the killed node, drains the queue and checks that every acknowledged",
            "message was received.",
            "",
            "  --before N              acknowledged sends before the kill (default 500)",
            "  --after N               acknowledged sends after it (default 500)",
            "  --dir DIR               the cluster's files (default target/demo in the project; wiped",
            "                          at start if this demo made it)",
            "  --session-timeout-ms MS ZooKeeper session timeout of the nodes, 400 to 4000 (default",
            "                          4000); a killed master is replaced once its session expires",
            "  --no-restart            leave the killed node down",
            "  --help                  this text",
            "",
            "Exit status: 0 nothing lost, 1 acknowledged messages lost, 2 usage error, 3 the demo",
            "could not run (the node logs are in DIR).");

    private FailoverDemo() {
    }

    /** What to run. */
    public static final class Options {
        Path dir;
        int before = 500;
        int after = 500;
        int sessionTimeoutMs = 4000;
        boolean restart = true;

        /** The cluster's files (wiped at start if the demo made them); default target/demo of the project. */
        public Options dir(Path d) {
            this.dir = d;
            return this;
        }

        /** Acknowledged sends before the master is killed. */
        public Options before(int n) {
            this.before = n;
            return this;
        }

        /** Acknowledged sends after the kill. */
        public Options after(int n) {
            this.after = n;
            return this;
        }

        /** The nodes' ZooKeeper session timeout (the test server allows 400 to 4000 ms). */
        public Options sessionTimeoutMs(int ms) {
            this.sessionTimeoutMs = ms;
            return this;
        }

        /** Whether the killed node is started again. */
        public Options restart(boolean on) {
            this.restart = on;
            return this;
        }

        void check() {
            if (before < 1 || after < 1) {
                throw new IllegalArgumentException("--before and --after must be at least 1");
            }
            if (sessionTimeoutMs < 400 || sessionTimeoutMs > 4000) {
                throw new IllegalArgumentException("--session-timeout-ms must be between 400 and 4000 (the demo's "
                        + "ZooKeeper server negotiates no other), not " + sessionTimeoutMs);
            }
        }
    }

    /** What a run found. */
    public static final class Summary {
        String killedMaster;
        long killedEpoch;
        String newMaster;
        long newEpoch;
        /** From the SIGKILL to the new master's broker started. */
        long brokerUpMs = -1;
        /** From the SIGKILL to the first send acknowledged after it. */
        long firstAckMs = -1;
        boolean restarted;
        /** The killed node came back as a slave of the new master and its link went live. */
        boolean rejoined;
        /** From the restart to the link being live. */
        long rejoinLiveMs = -1;
        long attempted;
        long acknowledged;
        long failed;
        /** Messages received, duplicates included. */
        long received;
        long distinctReceived;
        long duplicates;
        long redeliveredDuplicates;
        /** Received, never acknowledged (a send in flight at a failure or at the stop). */
        long unacknowledgedReceived;
        long lost;
        List<Integer> firstLost = List.of();
        List<String> splitBrains = List.of();

        public String killedMaster() {
            return killedMaster;
        }

        public long killedEpoch() {
            return killedEpoch;
        }

        public String newMaster() {
            return newMaster;
        }

        public long newEpoch() {
            return newEpoch;
        }

        public long brokerUpMs() {
            return brokerUpMs;
        }

        public long firstAckMs() {
            return firstAckMs;
        }

        public boolean restarted() {
            return restarted;
        }

        public boolean rejoined() {
            return rejoined;
        }

        public long rejoinLiveMs() {
            return rejoinLiveMs;
        }

        public long attempted() {
            return attempted;
        }

        public long acknowledged() {
            return acknowledged;
        }

        public long failed() {
            return failed;
        }

        public long received() {
            return received;
        }

        public long distinctReceived() {
            return distinctReceived;
        }

        public long duplicates() {
            return duplicates;
        }

        public long lost() {
            return lost;
        }

        /** The first few acknowledged numbers that were not received. */
        public List<Integer> firstLost() {
            return firstLost;
        }

        /** Moments two brokers ran at once (never expected). */
        public List<String> splitBrains() {
            return splitBrains;
        }

        /** Nothing acknowledged was lost. */
        public boolean ok() {
            return lost == 0;
        }

        void print(PrintStream out) {
            out.println();
            out.println("Summary");
            out.printf("  failover         %s (epoch %d) killed; %s master at epoch %d%n", killedMaster, killedEpoch,
                    newMaster, newEpoch);
            out.printf("                   new broker up %d ms after the kill, first acknowledged send %d ms after it%n",
                    brokerUpMs, firstAckMs);
            if (restarted) {
                out.printf("  rejoin           %s%n", rejoined
                        ? killedMaster + " back as a slave, live " + rejoinLiveMs + " ms after its restart"
                        : killedMaster + " restarted but did not go live");
            }
            out.printf("  sent             %d (sends attempted)%n", attempted);
            out.printf("  acknowledged     %d%n", acknowledged);
            out.printf("  failed           %d (sends that returned an error: not acknowledged)%n", failed);
            out.printf("  received         %d (%d distinct numbers, %d of them never acknowledged: in flight at the "
                    + "kill or the stop)%n", received, distinctReceived, unacknowledgedReceived);
            out.printf("  duplicates       %d (%d marked redelivered)%n", duplicates, redeliveredDuplicates);
            out.printf("  lost             %d (acknowledged but not received)%s%n", lost,
                    firstLost.isEmpty() ? "" : ": " + firstLost + (lost > firstLost.size() ? " ..." : ""));
            out.printf("  two brokers up   %s%n", splitBrains.isEmpty() ? "never" : splitBrains.size() + " times: "
                    + splitBrains.get(0));
            out.println(ok() ? "OK: every acknowledged message was received."
                    : "FAILED: " + lost + " acknowledged message(s) were not received.");
        }
    }

    /** The demo could not run to its end; the message says why and where the node logs are. */
    public static final class DemoFailure extends Exception {
        private static final long serialVersionUID = 1L;

        DemoFailure(String message, Throwable cause) {
            super(message, cause);
        }
    }

    public static void main(String[] args) {
        // The JMS client logs every reconnection at INFO; the demo prints its own account.
        if (System.getProperty("org.slf4j.simpleLogger.defaultLogLevel") == null) {
            System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        }
        // ... and the lost connection to the killed master at WARN, with a stack trace.
        String failoverLog = "org.slf4j.simpleLogger.log.org.apache.activemq.transport.failover";
        if (System.getProperty(failoverLog) == null) {
            System.setProperty(failoverLog, "error");
        }
        Options o;
        try {
            o = parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("FailoverDemo: " + e.getMessage());
            System.err.println(USAGE);
            System.exit(EXIT_USAGE);
            return;
        }
        if (o == null) {
            System.out.println(USAGE);
            return;
        }
        int status;
        try {
            status = run(o, System.out).ok() ? 0 : 1;
        } catch (DemoFailure e) {
            System.out.flush();
            System.err.println();
            System.err.println("FailoverDemo: ERROR: " + e.getMessage());
            Throwable cause = e.getCause();
            if (cause != null && (cause.getMessage() == null || !e.getMessage().contains(cause.getMessage()))) {
                System.err.println("  cause: " + cause);
            }
            status = EXIT_FAILED;
        } catch (InterruptedException e) {
            System.err.println("FailoverDemo: interrupted");
            status = EXIT_FAILED;
        }
        System.exit(status);
    }

    /** The options of {@code args}; null for {@code --help}. */
    static Options parse(String[] args) {
        Options o = new Options();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            String value = null;
            int eq = a.indexOf('=');
            if (a.startsWith("--") && eq > 0) {
                value = a.substring(eq + 1);
                a = a.substring(0, eq);
            }
            switch (a) {
                case "--help":
                case "-h":
                    return null;
                case "--no-restart":
                    o.restart = false;
                    continue;
                case "--before":
                case "--after":
                case "--dir":
                case "--session-timeout-ms":
                    break;
                default:
                    throw new IllegalArgumentException("unknown option " + args[i]);
            }
            if (value == null) {
                if (i + 1 >= args.length) {
                    throw new IllegalArgumentException(a + " needs a value");
                }
                value = args[++i];
            }
            switch (a) {
                case "--before":
                    o.before = number(a, value);
                    break;
                case "--after":
                    o.after = number(a, value);
                    break;
                case "--session-timeout-ms":
                    o.sessionTimeoutMs = number(a, value);
                    break;
                default:
                    o.dir = Paths.get(value);
                    break;
            }
        }
        o.check();
        return o;
    }

    private static int number(String option, String value) {
        try {
            return Integer.parseInt(value);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(option + " needs a number, not " + value);
        }
    }

    /**
     * Runs the demo, printing its progress and summary to {@code out}. Every process it starts is
     * stopped before it returns or throws (and by a shutdown hook if the JVM is stopped first).
     *
     * @throws DemoFailure the cluster did not come up or did not fail over, or the producer or
     *     consumer could not work; the message names the node logs
     */
    public static Summary run(Options o, PrintStream out) throws DemoFailure, InterruptedException {
        o.check();
        Path projectRoot;
        try {
            projectRoot = LocalCluster.findProjectRoot();
        } catch (IllegalStateException e) {
            throw new DemoFailure(e.getMessage(), null);
        }
        Path dir = (o.dir != null ? o.dir : projectRoot.resolve("target/demo")).toAbsolutePath().normalize();
        Progress p = new Progress(out);
        try {
            wipe(dir);
        } catch (IOException e) {
            throw new DemoFailure("cannot prepare " + dir + ": " + e.getMessage(), e);
        }

        LocalCluster cluster;
        try {
            cluster = new LocalCluster(dir, projectRoot, new LocalCluster.Options()
                    .nodes(NODES)
                    .minimumReplicas(1)
                    .sessionTimeoutMs(o.sessionTimeoutMs));
        } catch (IOException e) {
            throw new DemoFailure("cannot lay the cluster out in " + dir + ": " + e.getMessage(), e);
        }
        Cleanup cleanup = new Cleanup(cluster, p);
        Thread hook = new Thread(cleanup::shutdownHook, "failover demo cleanup");
        Runtime.getRuntime().addShutdownHook(hook);
        try {
            // Shown relative to the project when inside it (target/demo), as the docs name it.
            Path shown = dir.startsWith(projectRoot) ? projectRoot.relativize(dir) : dir;
            return demo(o, cluster, dir, shown, p);
        } catch (DemoFailure e) {
            throw cleanup.interrupted() ? new DemoFailure("stopped", null) : e;
        } catch (IOException | RuntimeException e) {
            throw new DemoFailure(cleanup.interrupted() ? "stopped" : e.getMessage() + logs(cluster, dir), e);
        } finally {
            cleanup.close();
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException e) {
                // the JVM is shutting down: the hook runs (and finds everything stopped)
            }
        }
    }

    private static Summary demo(Options o, LocalCluster cluster, Path dir, Path shown, Progress p)
            throws DemoFailure, IOException, InterruptedException {
        Summary s = new Summary();
        p.line("Failover demo: ZooKeeper and %d HA nodes in %s", NODES, shown);
        p.line("  minimumReplicas 1 (an acknowledged send is on two disks), ZooKeeper session timeout %d ms",
                o.sessionTimeoutMs);

        p.line("starting ZooKeeper and the nodes (the first start may resolve ZooKeeper's jars)");
        cluster.start();
        cluster.watchForSplitBrain();
        StringJoiner pids = new StringJoiner(", ");
        for (ClusterNode n : cluster.nodes()) {
            pids.add(n.name() + " pid " + n.pid());
        }
        p.line("ZooKeeper on %s; %s", cluster.zookeeper().connectString(), pids);

        ClusterNode master;
        try {
            master = cluster.awaitMaster(null, 120_000);
        } catch (IllegalStateException e) {
            throw new DemoFailure(e.getMessage() + logs(cluster, dir), null);
        }
        p.line("%s is master at epoch %d, its broker on tcp://127.0.0.1:%d", master.name(), master.epoch(),
                master.brokerPort());
        if (!cluster.awaitLiveSlaves(master, NODES - 1, 120_000)) {
            throw new DemoFailure("the master has " + master.liveSlaves() + " live slave(s), not " + (NODES - 1)
                    + ", after 120 s: " + cluster.nodes() + logs(cluster, dir), null);
        }
        p.line("%s follow it live", others(cluster, master));

        String url = cluster.failoverUrl();
        p.line("producer: numbered persistent messages to queue %s on %s", QUEUE, url);
        try (NumberedProducer producer = new NumberedProducer(url, QUEUE, BODY_BYTES, 0).start()) {
            awaitAcks(producer, o.before, p, cluster, dir);

            s.killedMaster = master.name();
            s.killedEpoch = master.epoch();
            int ackedAtKill = producer.ackedCount();
            p.line(">>> kill -9 %s (pid %d, master at epoch %d); %d sends acknowledged so far", master.name(),
                    master.pid(), master.epoch(), ackedAtKill);
            long t0 = System.nanoTime();
            master.kill();
            // Acknowledgements that count as after the failover: from here on the old master is
            // gone (between the signal and its death it may still have acknowledged a send).
            long gone = System.nanoTime();
            p.line("%s is gone; the others wait for ZooKeeper to expire its session (up to %d ms)", master.name(),
                    o.sessionTimeoutMs);

            ClusterNode next;
            try {
                next = cluster.awaitMaster(master, 60_000);
            } catch (IllegalStateException e) {
                throw new DemoFailure(e.getMessage() + logs(cluster, dir), null);
            }
            s.newMaster = next.name();
            s.newEpoch = next.epoch();
            s.brokerUpMs = TimeUnit.NANOSECONDS.toMillis(next.brokerUpAt() - t0);
            p.line("%s took over: master at epoch %d, its broker up %d ms after the kill", next.name(), next.epoch(),
                    s.brokerUpMs);
            if (cluster.awaitLiveSlaves(next, 1, 60_000)) {
                p.line("%s follows it live %d ms after the kill", others(cluster, next, master), ms(t0));
            }
            long first = producer.firstAckAfter(gone, 60_000);
            if (first < 0) {
                throw new DemoFailure("no send was acknowledged within 60 s of the failover (last error: "
                        + producer.lastError() + ")" + logs(cluster, dir), null);
            }
            s.firstAckMs = TimeUnit.NANOSECONDS.toMillis(first - t0);
            p.line("first acknowledged send %d ms after the kill (the producer's failover: URL reconnected to %s)",
                    s.firstAckMs, next.name());

            awaitAcks(producer, ackedAtKill + o.after, p, cluster, dir);

            if (o.restart) {
                s.restarted = true;
                long r0 = System.nanoTime();
                master.start();
                p.line(">>> %s restarted (pid %d), with the directory it had when it was killed", master.name(),
                        master.pid());
                if (!master.awaitRole("SLAVE", 60_000)) {
                    p.line("%s did not rejoin as a slave within 60 s: %s (see %s)", master.name(), master,
                            master.logFile());
                } else {
                    p.line("%s rejoined as a slave at epoch %d, %d ms after its restart", master.name(),
                            master.epoch(), ms(r0));
                    if (cluster.awaitLiveSlaves(next, NODES - 1, 120_000)) {
                        s.rejoined = true;
                        s.rejoinLiveMs = ms(r0);
                        p.line("%s is live (caught up with %s), %d ms after its restart; %s has %d live slaves",
                                master.name(), next.name(), s.rejoinLiveMs, next.name(), next.liveSlaves());
                    } else {
                        p.line("%s did not go live within 120 s: link %s (see %s)", master.name(), master.link(),
                                master.logFile());
                    }
                }
            }

            producer.stop(30_000);
            s.attempted = producer.attempted();
            s.acknowledged = producer.ackedCount();
            s.failed = producer.failed();
            p.line("producer stopped: %d sent, %d acknowledged, %d failed", s.attempted, s.acknowledged, s.failed);

            BitSet acked = producer.acked();
            p.line("draining queue %s from %s", QUEUE, next.name());
            NumberedConsumer c = new NumberedConsumer();
            try {
                c.drain(url, QUEUE, 3000, 300_000);
            } catch (jakarta.jms.JMSException e) {
                throw new DemoFailure("the consumer failed: " + e + logs(cluster, dir), e);
            }
            BitSet received = c.received();
            s.received = c.messages();
            s.distinctReceived = received.cardinality();
            s.duplicates = c.duplicates();
            s.redeliveredDuplicates = c.redeliveredDuplicates();
            BitSet extra = (BitSet) received.clone();
            extra.andNot(acked);
            s.unacknowledgedReceived = extra.cardinality();
            BitSet missing = (BitSet) acked.clone();
            missing.andNot(received);
            s.lost = missing.cardinality();
            s.firstLost = NumberedProducer.missing(acked, received, 10);
            p.line("received %d messages", s.received);
        }
        s.splitBrains = cluster.splitBrains();
        s.print(p.out);
        if (!s.ok()) {
            p.out.println("The node logs: " + shown.resolve("node*.log") + ", ZooKeeper's: "
                    + shown.resolve("zookeeper/zookeeper.log"));
        }
        return s;
    }

    /** Waits for {@code n} acknowledgements, printing the count every second. */
    private static void awaitAcks(NumberedProducer producer, int n, Progress p, LocalCluster cluster, Path dir)
            throws DemoFailure, InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(180);
        while (!producer.awaitAcked(n, 1000)) {
            String err = producer.failed() > 0 && producer.lastError() != null ? ", last error " + producer.lastError()
                    : "";
            p.line("  %d of %d acknowledged (%d sent, %d failed%s)", producer.ackedCount(), n, producer.attempted(),
                    producer.failed(), err);
            if (System.nanoTime() > deadline) {
                throw new DemoFailure("only " + producer.ackedCount() + " of " + n + " sends acknowledged after 180 s "
                        + "(last error: " + producer.lastError() + "); nodes: " + cluster.nodes() + logs(cluster, dir),
                        null);
            }
        }
        p.line("%d sends acknowledged (%d sent, %d failed)", producer.ackedCount(), producer.attempted(),
                producer.failed());
    }

    private static String others(LocalCluster cluster, ClusterNode... except) {
        StringJoiner j = new StringJoiner(" and ");
        for (ClusterNode n : cluster.nodes()) {
            if (!List.of(except).contains(n)) {
                j.add(n.name());
            }
        }
        return j.toString();
    }

    private static long ms(long since) {
        return TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - since);
    }

    /** Where to look: the node logs and ZooKeeper's, those that exist. */
    private static String logs(LocalCluster cluster, Path dir) {
        List<Path> candidates = new ArrayList<>();
        for (ClusterNode n : cluster.nodes()) {
            candidates.add(n.logFile());
        }
        candidates.add(dir.resolve("zookeeper/zookeeper.log"));
        List<String> files = new ArrayList<>();
        for (Path f : candidates) {
            if (Files.exists(f)) {
                files.add(f.toString());
            }
        }
        return files.isEmpty() ? "" : "\n  logs: " + String.join("\n        ", files);
    }

    /**
     * Empties {@code dir} for a new run: a directory that does not exist or is empty is used as
     * it is; one this demo made (it has the marker file) is wiped; anything else is refused.
     */
    static void wipe(Path dir) throws IOException {
        if (Files.exists(dir)) {
            if (!Files.isDirectory(dir)) {
                throw new IOException(dir + " is not a directory");
            }
            boolean empty;
            try (Stream<Path> s = Files.list(dir)) {
                empty = s.findAny().isEmpty();
            }
            if (!empty) {
                if (!Files.exists(dir.resolve(MARKER))) {
                    throw new IOException("it is not empty and not this demo's (no " + MARKER
                            + " file in it): not wiping it; name another --dir");
                }
                try (Stream<Path> s = Files.walk(dir)) {
                    for (Path f : (Iterable<Path>) s.sorted(Comparator.reverseOrder())::iterator) {
                        if (!f.equals(dir)) {
                            Files.delete(f);
                        }
                    }
                }
            }
        }
        Files.createDirectories(dir);
        Files.writeString(dir.resolve(MARKER), "files of the failover demo (make demo); wiped at its next start\n");
    }

    /** Stops the cluster once, from the demo's own finally block or from the shutdown hook. */
    private static final class Cleanup {
        private final LocalCluster cluster;
        private final Progress progress;
        private boolean closed;
        private volatile boolean interrupted;

        Cleanup(LocalCluster cluster, Progress progress) {
            this.cluster = cluster;
            this.progress = progress;
        }

        void shutdownHook() {
            interrupted = true;
            synchronized (this) {
                if (closed) {
                    return;
                }
                progress.mute("interrupted: stopping the nodes and ZooKeeper");
                // All nodes at once (close() stops them one after the other).
                List<Thread> stops = new ArrayList<>();
                for (ClusterNode n : cluster.nodes()) {
                    Thread t = new Thread(() -> {
                        try {
                            n.stop(20);
                        } catch (IOException | InterruptedException e) {
                            n.killQuietly();
                        }
                    }, "stop " + n.name());
                    t.start();
                    stops.add(t);
                }
                for (Thread t : stops) {
                    try {
                        t.join(60_000);
                    } catch (InterruptedException e) {
                        break;
                    }
                }
                close();
                progress.println("stopped");
            }
        }

        /** The JVM began to shut down (Ctrl-C, SIGTERM) before the demo ended. */
        boolean interrupted() {
            return interrupted;
        }

        synchronized void close() {
            if (!closed) {
                closed = true;
                cluster.close();
            }
        }
    }

    /** Progress lines with the time since the demo started. */
    private static final class Progress {
        final PrintStream out;
        private final long start = System.nanoTime();
        private volatile boolean muted;

        Progress(PrintStream out) {
            this.out = out;
        }

        void line(String format, Object... args) {
            if (!muted) {
                println(String.format(Locale.ROOT, format, args));
            }
        }

        /** Prints {@code text}, then nothing more through {@link #line} (the demo is being stopped). */
        void mute(String text) {
            muted = true;
            println(text);
        }

        synchronized void println(String text) {
            double s = (System.nanoTime() - start) / 1e9;
            out.println(String.format(Locale.ROOT, "[%6.1f s] ", s) + text);
            out.flush();
        }
    }
}
