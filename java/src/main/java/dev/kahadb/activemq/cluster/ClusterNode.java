package dev.kahadb.activemq.cluster;

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * One HA launcher ({@code dev.kahadb.activemq.HaLauncher}) of a {@link LocalCluster}, as a JVM
 * of its own. What it does is followed through its log: the lines the launcher writes when the
 * node becomes master or slave and when its broker starts or stops. The whole log is kept in
 * {@link #logFile()}.
 */
public final class ClusterNode {
    private static final Pattern MASTER = Pattern.compile("became master at epoch (\\d+)");
    private static final Pattern SLAVE = Pattern.compile("became slave of (\\S+) at epoch (\\d+)");
    private static final Pattern LIVE_SLAVES = Pattern.compile("replication: (\\d+) live slave");
    private static final Pattern LINK = Pattern.compile("replication: link to \\S+ (\\w+)");
    private static final Pattern BROKER_UP = Pattern.compile("broker \\S+ started, master at epoch (\\d+)");

    private final int index;
    private final int replicationPort;
    private final int brokerPort;
    private final Path directory;
    private final Path logFile;
    private final List<String> command;

    private Process process;
    private long generation;
    private boolean paused;
    private String role = "DOWN";
    private long epoch;
    private boolean brokerUp;
    private int liveSlaves;
    private String link = "down";
    /** System.nanoTime() of the last "broker started" line, 0 before. */
    private long brokerUpAt;
    private final List<Long> masterEpochs = new ArrayList<>();

    ClusterNode(int index, int replicationPort, int brokerPort, Path directory, List<String> command) {
        this.index = index;
        this.replicationPort = replicationPort;
        this.brokerPort = brokerPort;
        this.directory = directory;
        this.logFile = directory.resolveSibling(directory.getFileName() + ".log");
        this.command = command;
    }

    public int index() {
        return index;
    }

    /** {@code node<index>}. */
    public String name() {
        return "node" + index;
    }

    public String replicationUri() {
        return "kdbr://127.0.0.1:" + replicationPort;
    }

    /** The broker's OpenWire port: only the master listens on it. */
    public int brokerPort() {
        return brokerPort;
    }

    public Path directory() {
        return directory;
    }

    public Path logFile() {
        return logFile;
    }

    /** The process id, or -1 when the node is not running. */
    public synchronized long pid() {
        return process != null && process.isAlive() ? process.pid() : -1;
    }

    /** Starts the launcher's JVM (the node joins the election). */
    public synchronized void start() throws IOException {
        if (process != null && process.isAlive()) {
            throw new IllegalStateException(name() + " is running");
        }
        ProcessBuilder pb = new ProcessBuilder(command);
        pb.redirectErrorStream(true);
        Process p = pb.start();
        process = p;
        paused = false;
        role = "STARTING";
        brokerUp = false;
        liveSlaves = 0;
        link = "down";
        long g = ++generation;
        BufferedWriter log = Files.newBufferedWriter(logFile, StandardCharsets.UTF_8, StandardOpenOption.CREATE,
                StandardOpenOption.APPEND);
        Thread pump = new Thread(() -> pump(p, g, log), name() + " log");
        pump.setDaemon(true);
        pump.start();
    }

    private void pump(Process p, long g, BufferedWriter log) {
        try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
                BufferedWriter w = log) {
            String line;
            while ((line = r.readLine()) != null) {
                w.write(line);
                w.newLine();
                w.flush();
                observe(g, line);
            }
        } catch (IOException e) {
            // the process is gone
        }
        synchronized (this) {
            if (g == generation) {
                role = "DOWN";
                brokerUp = false;
                notifyAll();
            }
        }
    }

    private synchronized void observe(long g, String line) {
        if (g != generation) {
            return;
        }
        Matcher m;
        if ((m = BROKER_UP.matcher(line)).find()) {
            brokerUp = true;
            brokerUpAt = System.nanoTime();
            masterEpochs.add(Long.parseLong(m.group(1)));
        } else if ((m = LIVE_SLAVES.matcher(line)).find()) {
            liveSlaves = Integer.parseInt(m.group(1));
        } else if ((m = LINK.matcher(line)).find()) {
            link = m.group(1);
        } else if ((m = MASTER.matcher(line)).find()) {
            role = "MASTER";
            epoch = Long.parseLong(m.group(1));
            link = "down";
            liveSlaves = 0;
        } else if ((m = SLAVE.matcher(line)).find()) {
            role = "SLAVE";
            epoch = Long.parseLong(m.group(2));
            liveSlaves = 0;
            link = "down";
        } else if (line.contains("stopping broker")) {
            brokerUp = false;
        } else if (line.contains(": stopped: ")) {
            role = "STOPPED";
            brokerUp = false;
        }
        notifyAll();
    }

    /** MASTER, SLAVE, STOPPED, STARTING (launched, no role yet) or DOWN (no process). */
    public synchronized String role() {
        return role;
    }

    /** The epoch of the node's last role. */
    public synchronized long epoch() {
        return epoch;
    }

    /** True while the node's broker runs (it started and has not been stopped since). */
    public synchronized boolean brokerUp() {
        return brokerUp && process != null && process.isAlive();
    }

    /** A master: its live slaves, as last reported. */
    public synchronized int liveSlaves() {
        return role.equals("MASTER") ? liveSlaves : 0;
    }

    /** A slave: its link to the master (connecting, syncing, live, down), as last reported. */
    public synchronized String link() {
        return role.equals("SLAVE") ? link : "down";
    }

    /** When the broker last started (System.nanoTime()), 0 if it never did. */
    public synchronized long brokerUpAt() {
        return brokerUpAt;
    }

    /** The epochs at which this node's broker started, oldest first (across restarts). */
    public synchronized List<Long> masterEpochs() {
        return new ArrayList<>(masterEpochs);
    }

    public synchronized boolean paused() {
        return paused;
    }

    public synchronized boolean alive() {
        return process != null && process.isAlive();
    }

    /** SIGKILL, and waits until the process is gone. */
    public void kill() throws InterruptedException {
        Process p;
        synchronized (this) {
            p = process;
        }
        if (p == null) {
            return;
        }
        p.destroyForcibly();
        p.waitFor(30, TimeUnit.SECONDS);
        synchronized (this) {
            paused = false;
            role = "DOWN";
            brokerUp = false;
            notifyAll();
        }
    }

    /** SIGKILL without waiting (cleanup). */
    void killQuietly() {
        Process p;
        synchronized (this) {
            p = process;
        }
        if (p != null) {
            p.destroyForcibly();
        }
    }

    /** SIGTERM (the launcher stops its broker, then its node), waiting up to {@code seconds}. */
    public boolean stop(long seconds) throws IOException, InterruptedException {
        Process p;
        boolean wasPaused;
        synchronized (this) {
            p = process;
            wasPaused = paused;
        }
        if (p == null) {
            return true;
        }
        if (wasPaused) {
            signal("CONT");
        }
        // Through the handle: Process.destroy() would also close our end of the node's output,
        // and its last log lines (the broker and the node stopping) would be lost.
        p.toHandle().destroy();
        boolean gone = p.waitFor(seconds, TimeUnit.SECONDS);
        if (!gone) {
            p.destroyForcibly();
            p.waitFor(30, TimeUnit.SECONDS);
        }
        synchronized (this) {
            paused = false;
            role = "DOWN";
            brokerUp = false;
            notifyAll();
        }
        return gone;
    }

    /** SIGSTOP: the JVM freezes (threads, timers, its ZooKeeper session's pings). */
    public void pause() throws IOException, InterruptedException {
        signal("STOP");
        synchronized (this) {
            paused = true;
        }
    }

    /** SIGCONT. */
    public void resume() throws IOException, InterruptedException {
        signal("CONT");
        synchronized (this) {
            paused = false;
            notifyAll();
        }
    }

    private void signal(String sig) throws IOException, InterruptedException {
        long pid = pid();
        if (pid < 0) {
            throw new IllegalStateException(name() + " is not running");
        }
        Process k = new ProcessBuilder("kill", "-" + sig, Long.toString(pid)).redirectErrorStream(true).start();
        if (!k.waitFor(10, TimeUnit.SECONDS) || k.exitValue() != 0) {
            throw new IOException("kill -" + sig + " " + pid + " failed");
        }
    }

    /** Waits until the node's role is {@code role}. */
    public synchronized boolean awaitRole(String wanted, long timeoutMs) throws InterruptedException {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (!role.equals(wanted)) {
            long left = deadline - System.currentTimeMillis();
            if (left <= 0) {
                return false;
            }
            wait(Math.min(left, 100));
        }
        return true;
    }

    @Override
    public synchronized String toString() {
        return name() + "[" + role + (brokerUp ? "+broker" : "") + " epoch " + epoch + (paused ? " paused" : "") + "]";
    }
}
