package dev.kahadb.activemq.cluster;

import java.io.File;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.StringJoiner;
import java.util.concurrent.TimeUnit;

/**
 * A whole replicated cluster on one machine, for the demo, the end-to-end fault tests and the
 * failover benchmark: a ZooKeeper server, and N HA launchers as separate JVMs, each with its
 * own directory, replication port and broker port (every launcher runs the same broker config
 * but for the port: on one machine they cannot share it, and a paused master keeps its socket).
 *
 * <p>Optionally each node reaches ZooKeeper through a {@link Proxy} of its own, so that one
 * node can be cut off from ZooKeeper while the others are not.
 */
public final class LocalCluster implements AutoCloseable {

    /** What to build. */
    public static final class Options {
        int nodes = 3;
        int minimumReplicas = 1;
        int sessionTimeoutMs = 4000;
        int replicationTimeoutMs = 10_000;
        boolean zookeeperProxies;
        String brokerName = "kahadb-ha";
        String classPath;
        final List<String> jvmArgs = new ArrayList<>(List.of("-Xmx256m"));

        public Options nodes(int n) {
            this.nodes = n;
            return this;
        }

        public Options minimumReplicas(int n) {
            this.minimumReplicas = n;
            return this;
        }

        /** The ZooKeeper session timeout of every node (the test server allows 400 ms to 4 s). */
        public Options sessionTimeoutMs(int ms) {
            this.sessionTimeoutMs = ms;
            return this;
        }

        public Options replicationTimeoutMs(int ms) {
            this.replicationTimeoutMs = ms;
            return this;
        }

        /** Each node reaches ZooKeeper through a proxy of its own ({@link LocalCluster#zookeeperProxy}). */
        public Options zookeeperProxies(boolean on) {
            this.zookeeperProxies = on;
            return this;
        }

        public Options brokerName(String name) {
            this.brokerName = name;
            return this;
        }

        /**
         * The nodes' class path (it must hold the launcher, ActiveMQ and the native library);
         * by default this JVM's.
         */
        public Options classPath(String cp) {
            this.classPath = cp;
            return this;
        }

        /** Extra options of every node's JVM. */
        public Options jvmArg(String arg) {
            this.jvmArgs.add(arg);
            return this;
        }
    }

    private final Path root;
    private final Path projectRoot;
    private final Options options;
    private final ZooKeeperServer zookeeper;
    private final List<ClusterNode> nodes = new ArrayList<>();
    private final List<Proxy> proxies = new ArrayList<>();
    private final String zookeeperPath;
    private final List<String> splitBrains = new ArrayList<>();
    private volatile boolean closing;

    /**
     * Lays the cluster out under {@code root} (created; it should be empty) and starts nothing.
     *
     * @param projectRoot the project's checkout: {@code scripts/zookeeper.sh} and
     *     {@code target/release/kahadb-proxy} are taken from it
     */
    public LocalCluster(Path root, Path projectRoot, Options options) throws IOException {
        this.root = root.toAbsolutePath();
        this.projectRoot = projectRoot.toAbsolutePath();
        this.options = options;
        Files.createDirectories(this.root);
        this.zookeeper = new ZooKeeperServer(this.projectRoot.resolve("scripts/zookeeper.sh"),
                this.root.resolve("zookeeper"), freePort());
        this.zookeeperPath = "/kahadb-rs/" + options.brokerName;
    }

    /**
     * The project's checkout: the system property {@code kahadb.root} if set, else the first
     * directory upwards from the working directory that has {@code scripts/zookeeper.sh}.
     */
    public static Path findProjectRoot() {
        String p = System.getProperty("kahadb.root");
        if (p != null) {
            return Paths.get(p).toAbsolutePath();
        }
        Path d = Paths.get("").toAbsolutePath();
        while (d != null) {
            if (Files.isRegularFile(d.resolve("scripts/zookeeper.sh"))) {
                return d;
            }
            d = d.getParent();
        }
        throw new IllegalStateException("cannot find the project's checkout (scripts/zookeeper.sh) above "
                + Paths.get("").toAbsolutePath() + "; set -Dkahadb.root=DIR");
    }

    /** A free TCP port on the loopback interface. */
    public static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    /** The class path of this JVM, for the nodes' JVMs (under Maven's test runner: its test class path). */
    public static String classPath() {
        return System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
    }

    /** An xbean broker config that follows the launcher's rules, listening on {@code port}. */
    public static String brokerXml(String brokerName, int port, Path dataDirectory) {
        return "<beans xmlns=\"http://www.springframework.org/schema/beans\"\n"
                + "       xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"\n"
                + "       xsi:schemaLocation=\"http://www.springframework.org/schema/beans "
                + "http://www.springframework.org/schema/beans/spring-beans.xsd "
                + "http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd\">\n"
                + "  <broker xmlns=\"http://activemq.apache.org/schema/core\" brokerName=\"" + brokerName + "\"\n"
                + "          start=\"false\" useJmx=\"false\" schedulerSupport=\"false\"\n"
                + "          dataDirectory=\"" + dataDirectory + "\">\n"
                + "    <transportConnectors>\n"
                + "      <transportConnector name=\"openwire\" uri=\"tcp://127.0.0.1:" + port + "\"/>\n"
                + "    </transportConnectors>\n"
                + "  </broker>\n"
                + "</beans>\n";
    }

    /** Starts ZooKeeper, the proxies if any, and every node (which then elect a master). */
    public void start() throws IOException, InterruptedException {
        zookeeper.start();
        for (int i = 0; i < options.nodes; i++) {
            String zk = zookeeper.connectString();
            if (options.zookeeperProxies) {
                Proxy p = new Proxy(projectRoot.resolve("target/release/kahadb-proxy"), zk);
                proxies.add(p);
                zk = "127.0.0.1:" + p.port();
            }
            nodes.add(layOut(i + 1, zk));
        }
        for (ClusterNode n : nodes) {
            n.start();
        }
    }

    private ClusterNode layOut(int index, String zk) throws IOException {
        int brokerPort = freePort();
        int replicationPort = freePort();
        Path dir = root.resolve("node" + index);
        Path xml = root.resolve("node" + index + "-broker.xml");
        Files.writeString(xml, brokerXml(options.brokerName, brokerPort, root.resolve("node" + index + "-broker")),
                StandardCharsets.UTF_8);
        String java = System.getProperty("java.home") + File.separator + "bin" + File.separator + "java";
        List<String> cmd = new ArrayList<>();
        cmd.add(java);
        cmd.addAll(options.jvmArgs);
        cmd.add("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn");
        cmd.add("-Dorg.slf4j.simpleLogger.log.dev.kahadb=info");
        cmd.add("-Dorg.slf4j.simpleLogger.showDateTime=true");
        cmd.add("-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS");
        String cp = options.classPath != null ? options.classPath : classPath();
        cmd.addAll(List.of("-cp", cp, "dev.kahadb.activemq.HaLauncher",
                "--brokerURI", "xbean:" + xml,
                "--uri", "kdbr://127.0.0.1:" + replicationPort,
                "--directory", dir.toString(),
                "--minimumReplicas", Integer.toString(options.minimumReplicas),
                "--replicationTimeout", Integer.toString(options.replicationTimeoutMs),
                "--zookeeper", zk,
                "--zookeeperPath", zookeeperPath,
                "--sessionTimeout", Integer.toString(options.sessionTimeoutMs)));
        return new ClusterNode(index, replicationPort, brokerPort, dir, cmd);
    }

    public ZooKeeperServer zookeeper() {
        return zookeeper;
    }

    public List<ClusterNode> nodes() {
        return List.copyOf(nodes);
    }

    /** Node {@code index}, counted from 1. */
    public ClusterNode node(int index) {
        return nodes.get(index - 1);
    }

    /** The proxy between node {@code index} and ZooKeeper (with {@link Options#zookeeperProxies}). */
    public Proxy zookeeperProxy(int index) {
        if (proxies.isEmpty()) {
            throw new IllegalStateException("the cluster was built without ZooKeeper proxies");
        }
        return proxies.get(index - 1);
    }

    public Options options() {
        return options;
    }

    /**
     * The clients' URL: every node's broker port, in order, reconnecting quickly (50 ms at
     * first, at most every 100 ms) so that a failover is not stretched by the client's backoff.
     */
    public String failoverUrl() {
        return failoverUrl("");
    }

    /**
     * {@link #failoverUrl()} with options for each broker's tcp transport, e.g.
     * {@code wireFormat.maxInactivityDuration=3000} (a client notices a frozen broker in 3 s).
     */
    public String failoverUrl(String tcpOptions) {
        List<Integer> ports = new ArrayList<>();
        for (ClusterNode n : nodes) {
            ports.add(n.brokerPort());
        }
        return failoverUrl(ports, tcpOptions);
    }

    /** The failover URL of {@link #failoverUrl(String)} for brokers on these loopback ports. */
    public static String failoverUrl(List<Integer> brokerPorts, String tcpOptions) {
        StringJoiner j = new StringJoiner(",", "failover:(", ")");
        for (int port : brokerPorts) {
            j.add("tcp://127.0.0.1:" + port + (tcpOptions.isEmpty() ? "" : "?" + tcpOptions));
        }
        return j + "?randomize=false&initialReconnectDelay=50&maxReconnectDelay=100";
    }

    /**
     * Starts sampling, every 5 ms until {@link #close()}, how many unpaused nodes run their
     * broker at once; {@link #splitBrains()} then lists every moment it was more than one.
     */
    public void watchForSplitBrain() {
        Thread t = new Thread(() -> {
            while (!closing) {
                List<ClusterNode> m = masters();
                if (m.size() > 1) {
                    synchronized (splitBrains) {
                        if (splitBrains.size() < 100) {
                            splitBrains.add(java.time.Instant.now() + " " + m);
                        }
                    }
                }
                try {
                    Thread.sleep(5);
                } catch (InterruptedException e) {
                    return;
                }
            }
        }, "split-brain watch");
        t.setDaemon(true);
        t.start();
    }

    /** The moments two or more unpaused brokers ran at once (see {@link #watchForSplitBrain()}). */
    public List<String> splitBrains() {
        synchronized (splitBrains) {
            return new ArrayList<>(splitBrains);
        }
    }

    /** The nodes whose broker runs now and that are not paused. */
    public List<ClusterNode> masters() {
        List<ClusterNode> m = new ArrayList<>();
        for (ClusterNode n : nodes) {
            if (n.brokerUp() && !n.paused()) {
                m.add(n);
            }
        }
        return m;
    }

    /**
     * Waits until exactly one running, unpaused node runs its broker, other than
     * {@code except} (may be null), and returns it.
     *
     * @throws IllegalStateException two brokers run at once (a split brain: never acceptable)
     */
    public ClusterNode awaitMaster(ClusterNode except, long timeoutMs) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (true) {
            List<ClusterNode> m = masters();
            m.remove(except);
            if (m.size() > 1) {
                throw new IllegalStateException("two brokers run at once: " + m);
            }
            if (m.size() == 1) {
                return m.get(0);
            }
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("no master with a running broker within " + timeoutMs + " ms: " + nodes);
            }
            Thread.sleep(10);
        }
    }

    /** Waits until the master reports {@code n} live slaves. */
    public boolean awaitLiveSlaves(ClusterNode master, int n, long timeoutMs) throws InterruptedException {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (master.liveSlaves() < n) {
            if (System.currentTimeMillis() > deadline) {
                return false;
            }
            Thread.sleep(20);
        }
        return true;
    }

    /** Stops every node (SIGTERM), the proxies and ZooKeeper. */
    @Override
    public void close() {
        closing = true;
        boolean interrupted = false;
        for (ClusterNode n : nodes) {
            try {
                n.stop(30);
            } catch (IOException | InterruptedException e) {
                interrupted |= e instanceof InterruptedException;
                n.killQuietly();
            }
        }
        for (Proxy p : proxies) {
            p.close();
        }
        zookeeper.close();
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }
}
