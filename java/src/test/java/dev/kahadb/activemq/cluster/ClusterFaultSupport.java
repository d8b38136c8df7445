package dev.kahadb.activemq.cluster;

import java.io.File;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.StringJoiner;
import java.util.stream.Stream;

/** What the end-to-end fault tests share: waiting on the cluster, describing it, a little arithmetic. */
final class ClusterFaultSupport {
    private ClusterFaultSupport() {
    }

    /**
     * {@link LocalCluster#start()}, with the nodes' JVMs on a copy of the class path's
     * directories (the build's classes and the native library packed in them) taken into
     * {@code copyDir}, instead of the build directories themselves.
     *
     * <p>A node loads classes lazily, the first one late: a broker class when it is first
     * promoted, minutes after it started. If the build directory is recompiled meanwhile (another
     * build of the same checkout), the class is missing for a moment and the node fails in ways
     * the test is not about.
     */
    static void startOnCopiedClassPath(LocalCluster cluster, Path copyDir) throws IOException, InterruptedException {
        StringJoiner copied = new StringJoiner(File.pathSeparator);
        int i = 0;
        for (String entry : LocalCluster.classPath().split(File.pathSeparator)) {
            Path p = Paths.get(entry);
            if (Files.isDirectory(p)) {
                Path target = copyDir.resolve("classpath" + i++);
                copyTree(p, target);
                copied.add(target.toString());
            } else {
                copied.add(entry);
            }
        }
        cluster.options().classPath(copied.toString());
        cluster.start();
    }

    /** Copies a directory tree; a file that vanished while copying (a build running) means another try. */
    private static void copyTree(Path from, Path to) throws IOException, InterruptedException {
        for (int attempt = 1;; attempt++) {
            try (Stream<Path> files = Files.walk(from)) {
                for (Path f : (Iterable<Path>) files::iterator) {
                    Path t = to.resolve(from.relativize(f).toString());
                    if (Files.isDirectory(f)) {
                        Files.createDirectories(t);
                    } else {
                        Files.copy(f, t, StandardCopyOption.REPLACE_EXISTING);
                    }
                }
                return;
            } catch (NoSuchFileException | UncheckedIOException e) {
                if (attempt == 5) {
                    throw e;
                }
                Thread.sleep(2000);
            }
        }
    }

    /** Every node's state and log file, one per line, for an assertion message. */
    static String describe(LocalCluster cluster) {
        StringBuilder b = new StringBuilder();
        for (ClusterNode n : cluster.nodes()) {
            b.append("\n  ").append(n).append(" link ").append(n.link()).append(", ").append(n.liveSlaves())
                    .append(" live slave(s), broker epochs ").append(n.masterEpochs()).append(", log ")
                    .append(n.logFile());
        }
        return b.toString();
    }

    /**
     * {@link LocalCluster#awaitMaster}, with a failure (none in time, or two brokers at once)
     * turned into an assertion error that describes every node.
     */
    static ClusterNode awaitMaster(LocalCluster cluster, ClusterNode except, long timeoutMs, String when)
            throws InterruptedException {
        try {
            return cluster.awaitMaster(except, timeoutMs);
        } catch (IllegalStateException e) {
            throw new AssertionError(when + ": " + e.getMessage() + describe(cluster), e);
        }
    }

    /**
     * Waits until {@code node} is a slave with a live link to the master, and {@code master}
     * counts {@code liveSlaves} live slaves.
     */
    static boolean awaitLiveSlave(ClusterNode master, ClusterNode node, int liveSlaves, long timeoutMs)
            throws InterruptedException {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (!(node.role().equals("SLAVE") && node.link().equals("live") && master.liveSlaves() >= liveSlaves)) {
            if (System.currentTimeMillis() > deadline || !master.brokerUp()) {
                return false;
            }
            Thread.sleep(20);
        }
        return true;
    }

    static long median(List<Long> values) {
        if (values.isEmpty()) {
            return -1;
        }
        List<Long> s = new ArrayList<>(values);
        Collections.sort(s);
        return s.get(s.size() / 2);
    }

    static long max(List<Long> values) {
        return values.isEmpty() ? -1 : Collections.max(values);
    }

    static long millis(long fromNanos, long toNanos) {
        return (toNanos - fromNanos) / 1_000_000;
    }

    /** True if every element is greater than the one before. */
    static boolean strictlyIncreasing(List<Long> values) {
        for (int i = 1; i < values.size(); i++) {
            if (values.get(i) <= values.get(i - 1)) {
                return false;
            }
        }
        return true;
    }
}
