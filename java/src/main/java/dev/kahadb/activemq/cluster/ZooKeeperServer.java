package dev.kahadb.activemq.cluster;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/**
 * A standalone ZooKeeper server in a process of its own ({@code scripts/zookeeper.sh}), on a
 * fixed loopback port and data directory, so that it can be stopped and started again as the
 * same server (its sessions survive a restart that is shorter than their timeout).
 */
public final class ZooKeeperServer implements AutoCloseable {
    private final Path script;
    private final Path dir;
    private final int port;
    private Process process;

    /**
     * @param script {@code scripts/zookeeper.sh} of the project
     * @param dir the server's data and configuration directory (created)
     * @param port its loopback client port
     */
    public ZooKeeperServer(Path script, Path dir, int port) {
        this.script = script;
        this.dir = dir;
        this.port = port;
    }

    public int port() {
        return port;
    }

    /** {@code 127.0.0.1:port}. */
    public String connectString() {
        return "127.0.0.1:" + port;
    }

    /** Starts the server and waits (up to two minutes: the first start resolves its jars) until it serves. */
    public synchronized void start() throws IOException, InterruptedException {
        if (process != null && process.isAlive()) {
            return;
        }
        Files.createDirectories(dir);
        ProcessBuilder pb = new ProcessBuilder("bash", script.toString(), "start", dir.toString(), Integer.toString(port));
        pb.redirectErrorStream(true);
        pb.redirectOutput(ProcessBuilder.Redirect.appendTo(dir.resolve("zookeeper.log").toFile()));
        process = pb.start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (!serving()) {
            if (!process.isAlive()) {
                throw new IOException("the ZooKeeper server exited with status " + process.exitValue() + "; see "
                        + dir.resolve("zookeeper.log"));
            }
            if (System.nanoTime() > deadline) {
                stop();
                throw new IOException("the ZooKeeper server did not answer on port " + port + " within 120 s; see "
                        + dir.resolve("zookeeper.log"));
            }
            Thread.sleep(50);
        }
    }

    /** Stops the server (SIGTERM, then SIGKILL after 20 s) and waits until it is gone. */
    public synchronized void stop() throws InterruptedException {
        if (process == null) {
            return;
        }
        process.destroy();
        if (!process.waitFor(20, TimeUnit.SECONDS)) {
            process.destroyForcibly();
            process.waitFor(20, TimeUnit.SECONDS);
        }
        process = null;
    }

    /** True when the server answers {@code srvr} as a running server. */
    public boolean serving() {
        String a = fourLetters("srvr");
        return a != null && a.contains("Mode:");
    }

    private String fourLetters(String cmd) {
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(InetAddress.getLoopbackAddress(), port), 500);
            s.setSoTimeout(1000);
            OutputStream out = s.getOutputStream();
            out.write(cmd.getBytes(StandardCharsets.US_ASCII));
            out.flush();
            InputStream in = s.getInputStream();
            return new String(in.readAllBytes(), StandardCharsets.US_ASCII);
        } catch (IOException e) {
            return null;
        }
    }

    @Override
    public void close() {
        try {
            stop();
        } catch (InterruptedException e) {
            if (process != null) {
                process.destroyForcibly();
            }
            Thread.currentThread().interrupt();
        }
    }
}
