package dev.kahadb.activemq.cluster;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/**
 * The project's loopback fault proxy ({@code kahadb-proxy}) as a child process: it forwards a
 * local port to a target and, on command, cuts or blocks what goes through it.
 */
public final class Proxy implements AutoCloseable {
    private final Process process;
    private final BufferedReader out;
    private final Writer in;
    private final int port;

    /**
     * Starts {@code binary} listening on a free loopback port, forwarding to {@code target}
     * ({@code host:port}).
     */
    public Proxy(Path binary, String target) throws IOException {
        ProcessBuilder pb = new ProcessBuilder(binary.toString(), "0", target);
        pb.redirectError(ProcessBuilder.Redirect.DISCARD);
        process = pb.start();
        out = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
        in = new OutputStreamWriter(process.getOutputStream(), StandardCharsets.UTF_8);
        String first = out.readLine();
        if (first == null) {
            throw new IOException("kahadb-proxy exited before it printed its port");
        }
        try {
            port = Integer.parseInt(first.trim());
        } catch (NumberFormatException e) {
            process.destroyForcibly();
            throw new IOException("kahadb-proxy printed '" + first + "' instead of its port", e);
        }
    }

    public int port() {
        return port;
    }

    /** Sends one command ({@code block}, {@code unblock}, {@code cut}, ...) and returns its answer. */
    public synchronized String command(String line) throws IOException {
        in.write(line + "\n");
        in.flush();
        String answer = out.readLine();
        if (answer == null) {
            throw new IOException("kahadb-proxy exited");
        }
        if (answer.startsWith("ERR")) {
            throw new IOException("kahadb-proxy: " + line + ": " + answer);
        }
        return answer;
    }

    /** A partition: nothing passes until {@link #unblock()}. */
    public void block() throws IOException {
        command("block");
    }

    public void unblock() throws IOException {
        command("unblock");
    }

    @Override
    public void close() {
        try {
            command("quit");
        } catch (IOException e) {
            // already gone
        }
        process.destroy();
        try {
            if (!process.waitFor(5, TimeUnit.SECONDS)) {
                process.destroyForcibly();
            }
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        }
    }
}
