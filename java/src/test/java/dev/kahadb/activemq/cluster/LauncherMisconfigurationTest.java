package dev.kahadb.activemq.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The HA launcher ({@code dev.kahadb.activemq.HaLauncher}) misconfigured, each time as a process
 * of its own: it must exit soon with the documented status (2 for a configuration error, 1 when
 * ZooKeeper cannot be reached), say on standard error what is wrong, and leave nothing started
 * half-way: nothing ever listened on the broker's or the replication port, and neither the
 * node's directory, the broker's data directory nor anything in the working directory was
 * created.
 */
class LauncherMisconfigurationTest {
    /** Generous: a launcher JVM takes about a second, the machine may be busy. */
    private static final long EXIT_WITHIN_MS = 60_000;

    @TempDir
    Path dir;

    /** One launcher run: its arguments, and what to watch. */
    private final class Launch {
        final Path root;
        final int brokerPort;
        final int replicationPort;
        final int zookeeperPort;
        final Path node;
        final Path brokerData;
        final Path work;
        final List<String> args = new ArrayList<>();

        Launch(String name) throws IOException {
            root = Files.createDirectories(dir.resolve(name));
            brokerPort = LocalCluster.freePort();
            replicationPort = LocalCluster.freePort();
            // A closed port: nothing listens there.
            zookeeperPort = LocalCluster.freePort();
            node = root.resolve("node");
            brokerData = root.resolve("broker-data");
            work = Files.createDirectories(root.resolve("work"));
        }

        /** The broker config the cluster runs (start="false", no adapter), edited by {@code edit}. */
        String xbean(java.util.function.UnaryOperator<String> edit) throws IOException {
            Path xml = root.resolve("broker.xml");
            Files.writeString(xml, edit.apply(LocalCluster.brokerXml("misconfigured", brokerPort, brokerData)),
                    StandardCharsets.UTF_8);
            return "xbean:" + xml;
        }

        /** The launcher's flags, with {@code brokerURI} and {@code uri} as given and the rest valid. */
        Launch flags(String brokerURI, String uri) {
            args.addAll(List.of("--brokerURI", brokerURI, "--uri", uri, "--directory", node.toString(),
                    "--minimumReplicas", "1", "--zookeeper", "127.0.0.1:" + zookeeperPort,
                    "--zookeeperPath", "/kahadb-rs/misconfigured", "--sessionTimeout", "2000"));
            return this;
        }

        String goodUri() {
            return "kdbr://127.0.0.1:" + replicationPort;
        }

        /** Runs the launcher to its end and checks that nothing was started on the way. */
        Result run() throws Exception {
            String java = System.getProperty("java.home") + File.separator + "bin" + File.separator + "java";
            List<String> cmd = new ArrayList<>(List.of(java, "-Xmx256m",
                    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-Dorg.slf4j.simpleLogger.log.dev.kahadb=info",
                    "-cp", LocalCluster.classPath(), "dev.kahadb.activemq.HaLauncher"));
            cmd.addAll(args);
            Path out = root.resolve("stdout.txt");
            Path err = root.resolve("stderr.txt");
            ProcessBuilder pb = new ProcessBuilder(cmd).directory(work.toFile())
                    .redirectOutput(out.toFile()).redirectError(err.toFile());
            long t0 = System.nanoTime();
            Process p = pb.start();
            PortWatch watch = new PortWatch(p, brokerPort, replicationPort);
            watch.start();
            boolean ended = p.waitFor(EXIT_WITHIN_MS, TimeUnit.MILLISECONDS);
            long ms = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
            if (!ended) {
                p.destroyForcibly();
                p.waitFor(30, TimeUnit.SECONDS);
            }
            watch.join(10_000);
            Result r = new Result(ended ? p.exitValue() : -1, ms, Files.readString(out, StandardCharsets.UTF_8),
                    Files.readString(err, StandardCharsets.UTF_8), watch.listened());
            System.out.printf("%s: exit %d after %d ms; stderr: %s%n", root.getFileName(), r.status, r.millis,
                    r.stderr.lines().filter(l -> l.startsWith("kahadb-ha")).findFirst().orElse(r.stderr.strip()));
            assertTrue(ended, root.getFileName() + ": the launcher ended within " + EXIT_WITHIN_MS + " ms");
            assertEquals(List.of(), r.listened, "nothing listened while the launcher ran");
            assertFalse(r.stdout.contains("joined the election"), r.stdout);
            assertFalse(Files.exists(node), "the node's directory was created: " + list(node));
            assertFalse(Files.exists(brokerData), "the broker's data directory was created: " + list(brokerData));
            assertEquals(List.of(), list(work), "files left in the working directory");
            return r;
        }
    }

    /** How a launcher run ended. */
    private static final class Result {
        final int status;
        final long millis;
        final String stdout;
        final String stderr;
        final List<String> listened;

        Result(int status, long millis, String stdout, String stderr, List<String> listened) {
            this.status = status;
            this.millis = millis;
            this.stdout = stdout;
            this.stderr = stderr;
            this.listened = listened;
        }

        /** Exit status 2 and {@code kahadb-ha: configuration error: ...} naming each of {@code words}. */
        void configurationError(String... words) {
            assertEquals(2, status, "exit status of a configuration error; stderr: " + stderr);
            String line = firstLine();
            assertTrue(line.startsWith("kahadb-ha: configuration error: "), "stderr: " + stderr);
            for (String w : words) {
                assertTrue(line.contains(w), "the message names '" + w + "': " + line);
            }
            assertTrue(stderr.contains("usage: kahadb-ha"), "the usage follows: " + stderr);
        }

        String firstLine() {
            return stderr.lines().filter(l -> l.startsWith("kahadb-ha")).findFirst().orElse(stderr);
        }
    }

    /** Tries both ports every few milliseconds while the launcher runs; any connection is a failure. */
    private static final class PortWatch extends Thread {
        private final Process process;
        private final int[] ports;
        private final List<String> listened = new ArrayList<>();

        PortWatch(Process process, int... ports) {
            super("port watch");
            setDaemon(true);
            this.process = process;
            this.ports = ports;
        }

        @Override
        public void run() {
            while (process.isAlive()) {
                for (int port : ports) {
                    try (Socket s = new Socket()) {
                        s.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), 50);
                        synchronized (listened) {
                            if (!listened.contains("port " + port)) {
                                listened.add("port " + port);
                            }
                        }
                    } catch (IOException e) {
                        // nothing listens: as it should be
                    }
                }
                try {
                    Thread.sleep(5);
                } catch (InterruptedException e) {
                    return;
                }
            }
        }

        List<String> listened() {
            synchronized (listened) {
                return new ArrayList<>(listened);
            }
        }
    }

    private static List<String> list(Path d) {
        if (!Files.isDirectory(d)) {
            return List.of();
        }
        try (Stream<Path> s = Files.walk(d)) {
            return s.filter(x -> !x.equals(d)).map(x -> d.relativize(x).toString()).sorted().toList();
        } catch (IOException e) {
            return List.of("? " + e);
        }
    }

    // ------------------------------------------------------------------------------------------
    // The broker config

    @Test
    void aBrokerThatStartsByItself() throws Exception {
        Launch l = new Launch("start-true");
        l.flags(l.xbean(x -> x.replace("start=\"false\"", "start=\"true\"")), l.goodUri());
        l.run().configurationError("start=\"false\"", "it says start=\"true\"");
    }

    @Test
    void aBrokerWithoutStartFalse() throws Exception {
        Launch l = new Launch("start-missing");
        String uri = l.xbean(x -> x.replace("start=\"false\"", ""));
        l.flags(uri, l.goodUri());
        l.run().configurationError(uri, "must say start=\"false\"");
    }

    @Test
    void aBrokerUriThatStartsByItself() throws Exception {
        Launch l = new Launch("broker-uri-start-true");
        l.flags("broker:(tcp://127.0.0.1:" + l.brokerPort + ")?useJmx=false&start=true&dataDirectory=" + l.brokerData,
                l.goodUri());
        l.run().configurationError("start=true", "must not start by itself");
    }

    @Test
    void aBrokerWithAPersistenceAdapter() throws Exception {
        Launch l = new Launch("persistence-adapter");
        Path kahadb = l.root.resolve("kahadb");
        l.flags(l.xbean(x -> x.replace("<transportConnectors>", "<persistenceAdapter><kahaDB directory=\"" + kahadb
                + "\"/></persistenceAdapter>\n    <transportConnectors>")), l.goodUri());
        l.run().configurationError("configures a persistence adapter", "<persistenceAdapter>");
        assertFalse(Files.exists(kahadb), "the configured adapter's directory was created");
    }

    @Test
    void aBrokerUriWithAPersistenceAdapter() throws Exception {
        Launch l = new Launch("broker-uri-persistence-adapter");
        l.flags("broker:(tcp://127.0.0.1:" + l.brokerPort + ")?useJmx=false&persistenceAdapter.directory="
                + l.root.resolve("kahadb"), l.goodUri());
        l.run().configurationError("configures a persistence adapter", "persistenceAdapter.directory");
    }

    @Test
    void aBrokerXmlThatDoesNotExist() throws Exception {
        Launch l = new Launch("no-such-xml");
        Path missing = l.root.resolve("nowhere/broker.xml");
        l.flags("xbean:" + missing, l.goodUri());
        l.run().configurationError("no such file", missing.toString());
    }

    // ------------------------------------------------------------------------------------------
    // The node's replication address

    @Test
    void aKdbrUriWithoutPort() throws Exception {
        badUri("kdbr://nohost", "uri must be kdbr://host:port", "'kdbr://nohost'");
    }

    @Test
    void aUriOfAnotherScheme() throws Exception {
        badUri("http://x:1", "uri must be kdbr://host:port", "'http://x:1'");
    }

    @Test
    void aKdbrUriWithPortZero() throws Exception {
        badUri("kdbr://127.0.0.1:0", "port 0 is out of range", "kdbr://127.0.0.1:0");
    }

    @Test
    void aKdbrUriWithPortTooLarge() throws Exception {
        badUri("kdbr://127.0.0.1:70000", "port 70000 is out of range", "kdbr://127.0.0.1:70000");
    }

    private void badUri(String uri, String... words) throws Exception {
        Launch l = new Launch("uri-" + uri.replaceAll("[^A-Za-z0-9]+", "-"));
        l.flags(l.xbean(x -> x), uri);
        l.run().configurationError(words);
    }

    // ------------------------------------------------------------------------------------------
    // ZooKeeper

    @Test
    void zooKeeperUnreachable() throws Exception {
        Launch l = new Launch("zookeeper-unreachable");
        l.flags(l.xbean(x -> x), l.goodUri());
        Result r = l.run();
        // Documented (HaLauncher, docs/OPERATIONS.md): a start failure, not a configuration error.
        assertEquals(1, r.status, "exit status when ZooKeeper cannot be reached; stderr: " + r.stderr);
        String line = r.firstLine();
        assertTrue(line.contains("ZooKeeper is unreachable at 127.0.0.1:" + l.zookeeperPort), line);
        assertTrue(line.contains("nothing was started"), line);
        assertFalse(r.stderr.contains("configuration error"), r.stderr);
    }

    /**
     * The same with a {@code broker:} URI whose port is taken at the time (a slave sharing a host
     * with a broker on that port): the launcher's start-up check creates the broker once, and
     * ActiveMQ binds a {@code broker:} URI's connectors when it creates the broker, so the port
     * listens for a moment on every start (nothing is supposed to listen before this node is
     * master), and a busy port is reported as a configuration error (exit 2) instead of the
     * unreachable ZooKeeper (exit 1).
     */
    @Test
    void aBrokerUriDoesNotTakeItsPortBeforeTheNodeIsMaster() throws Exception {
        Launch l = new Launch("zookeeper-unreachable-broker-uri");
        try (ServerSocket busy = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            l.flags("broker:(tcp://127.0.0.1:" + busy.getLocalPort() + ")?useJmx=false&dataDirectory=" + l.brokerData,
                    l.goodUri());
            Result r = l.run();
            assertEquals(1, r.status, "exit status when ZooKeeper cannot be reached; stderr: " + r.stderr);
            assertTrue(r.firstLine().contains("ZooKeeper is unreachable"), r.stderr);
        }
    }
}
