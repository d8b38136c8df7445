package dev.kahadb.bench;

import java.io.BufferedReader;
import java.io.File;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;
import jakarta.jms.BytesMessage;
import jakarta.jms.Connection;
import jakarta.jms.DeliveryMode;
import jakarta.jms.MessageConsumer;
import jakarta.jms.MessageProducer;
import jakarta.jms.Session;
import org.apache.activemq.ActiveMQConnectionFactory;
import org.apache.activemq.broker.BrokerService;
import org.apache.activemq.broker.region.Destination;
import org.apache.activemq.command.ActiveMQQueue;
import org.apache.activemq.store.PersistenceAdapter;
import org.apache.activemq.store.kahadb.KahaDBPersistenceAdapter;

/**
 * The broker benchmark of {@code make bench-broker}: the same ActiveMQ broker and workload on
 * ActiveMQ's own {@code KahaDBPersistenceAdapter} and on kahadb-rs, over tcp, 1 KiB persistent
 * messages. Each measurement runs against a broker in a child JVM (so that it can be killed),
 * and prints one JSON line.
 *
 * <pre>
 * driver --store kahadb|kahadb-rs --case send1|send8|consume|restart --dir D [--messages N]
 * broker --store kahadb|kahadb-rs --dir D --port P      (child; commands on stdin: stop, rss)
 * </pre>
 */
public final class BrokerBench {
    static final String QUEUE = "bench.queue";
    static final int SIZE = 1024;
    static final String RS_ADAPTER = "dev.kahadb.activemq.KahaRsPersistenceAdapter";

    private BrokerBench() {
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> a = new HashMap<>();
        for (int i = 1; i + 1 < args.length; i += 2) {
            a.put(args[i].replaceFirst("^--", ""), args[i + 1]);
        }
        if (args.length > 0 && args[0].equals("broker")) {
            broker(a.get("store"), Path.of(a.get("dir")), Integer.parseInt(a.get("port")));
        } else if (args.length > 0 && args[0].equals("driver")) {
            driver(a);
        } else {
            System.err.println("usage: BrokerBench driver|broker --store S --dir D ...");
            System.exit(2);
        }
    }

    // ------------------------------------------------------------------------------------------
    // The broker (child JVM)

    static PersistenceAdapter adapter(String store, Path dir) throws Exception {
        if (store.equals("kahadb")) {
            KahaDBPersistenceAdapter k = new KahaDBPersistenceAdapter();
            k.setDirectory(dir.toFile());
            return k;
        }
        PersistenceAdapter p = (PersistenceAdapter) Class.forName(RS_ADAPTER).getDeclaredConstructor().newInstance();
        p.setDirectory(dir.toFile());
        return p;
    }

    static void broker(String store, Path dir, int port) throws Exception {
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        long rssBefore = rssKb();
        BrokerService broker = new BrokerService();
        broker.setBrokerName("bench");
        broker.setUseJmx(false);
        broker.setAdvisorySupport(false);
        broker.setPersistenceAdapter(adapter(store, dir));
        broker.addConnector("tcp://127.0.0.1:" + port);
        long t0 = System.nanoTime();
        broker.start();
        broker.waitUntilStarted();
        Destination q = broker.getDestination(new ActiveMQQueue(QUEUE));
        long pending = q == null ? 0 : q.getMessageStore().getMessageCount();
        long startMs = (System.nanoTime() - t0) / 1_000_000;
        out.printf(Locale.ROOT, "{\"event\":\"started\",\"start_ms\":%d,\"pending\":%d,\"rss_kb\":%d,\"rss_before_kb\":%d}%n",
                startMs, pending, rssKb(), rssBefore);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.equals("rss")) {
                System.gc();
                Runtime rt = Runtime.getRuntime();
                out.printf(Locale.ROOT, "{\"event\":\"rss\",\"rss_kb\":%d,\"heap_used_kb\":%d}%n", rssKb(),
                        (rt.totalMemory() - rt.freeMemory()) / 1024);
            } else if (line.equals("stop")) {
                break;
            }
        }
        broker.stop();
        broker.waitUntilStopped();
        out.println("{\"event\":\"stopped\"}");
        System.exit(0);
    }

    /**
     * Resident anonymous memory (heap, native allocations): what the process itself holds, not
     * the page-cache pages of data files it happens to have mapped (which the kernel can drop).
     */
    static long rssKb() throws IOException {
        for (String l : Files.readAllLines(Path.of("/proc/self/status"))) {
            if (l.startsWith("RssAnon:")) {
                return Long.parseLong(l.replaceAll("[^0-9]", ""));
            }
        }
        return -1;
    }

    // ------------------------------------------------------------------------------------------
    // The driver

    /** A broker child process. */
    static final class Child implements AutoCloseable {
        final Process process;
        final BufferedReader out;
        final int port;
        final String started;

        Child(String store, Path dir) throws Exception {
            try (ServerSocket s = new ServerSocket(0)) {
                port = s.getLocalPort();
            }
            List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
            cmd.addAll(Arrays.asList(System.getProperty("bench.broker.jvm", "-Xms1g -Xmx1g").split(" ")));
            cmd.add("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn");
            cmd.add("-cp");
            cmd.add(System.getProperty("java.class.path"));
            cmd.add(BrokerBench.class.getName());
            cmd.addAll(List.of("broker", "--store", store, "--dir", dir.toString(), "--port", Integer.toString(port)));
            process = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
            out = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
            started = expect("started");
        }

        String expect(String event) throws IOException {
            String line;
            while ((line = out.readLine()) != null) {
                if (line.contains("\"event\":\"" + event + "\"")) {
                    return line;
                }
            }
            throw new IOException("the broker exited before reporting " + event);
        }

        String command(String c, String event) throws IOException {
            process.getOutputStream().write((c + "\n").getBytes(StandardCharsets.UTF_8));
            process.getOutputStream().flush();
            return expect(event);
        }

        void kill() throws InterruptedException {
            process.destroyForcibly();
            process.waitFor();
        }

        @Override
        public void close() throws IOException {
            if (process.isAlive()) {
                command("stop", "stopped");
                try {
                    process.waitFor(60, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IOException("interrupted while the broker stopped", e);
                }
            }
        }

        ActiveMQConnectionFactory factory(boolean async) {
            ActiveMQConnectionFactory f = new ActiveMQConnectionFactory("tcp://127.0.0.1:" + port);
            f.setUseAsyncSend(async);
            f.setWatchTopicAdvisories(false);
            return f;
        }
    }

    static long field(String json, String name) {
        int i = json.indexOf("\"" + name + "\":");
        int s = i + name.length() + 3;
        int e = s;
        while (e < json.length() && (Character.isDigit(json.charAt(e)) || json.charAt(e) == '-')) {
            e++;
        }
        return Long.parseLong(json.substring(s, e));
    }

    static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) {
            return;
        }
        try (Stream<Path> s = Files.walk(p)) {
            for (Path x : s.sorted((x, y) -> y.getNameCount() - x.getNameCount()).toList()) {
                Files.delete(x);
            }
        }
    }

    /** Sends {@code total} messages from {@code producers} threads; returns messages per second. */
    static double send(Child broker, int producers, int total, boolean async) throws Exception {
        ActiveMQConnectionFactory f = broker.factory(async);
        byte[] body = new byte[SIZE];
        Arrays.fill(body, (byte) 'x');
        CountDownLatch ready = new CountDownLatch(producers);
        CountDownLatch go = new CountDownLatch(1);
        List<Thread> threads = new ArrayList<>();
        List<Exception> errors = new ArrayList<>();
        for (int p = 0; p < producers; p++) {
            int n = total / producers + (p < total % producers ? 1 : 0);
            Thread t = new Thread(() -> {
                try (Connection c = f.createConnection()) {
                    c.start();
                    Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
                    MessageProducer mp = s.createProducer(s.createQueue(QUEUE));
                    mp.setDeliveryMode(DeliveryMode.PERSISTENT);
                    ready.countDown();
                    go.await();
                    for (int i = 0; i < n; i++) {
                        BytesMessage m = s.createBytesMessage();
                        m.writeBytes(body);
                        mp.send(m);
                    }
                } catch (Exception e) {
                    synchronized (errors) {
                        errors.add(e);
                    }
                }
            });
            t.start();
            threads.add(t);
        }
        ready.await();
        long t0 = System.nanoTime();
        go.countDown();
        for (Thread t : threads) {
            t.join();
        }
        double secs = (System.nanoTime() - t0) / 1e9;
        if (!errors.isEmpty()) {
            throw errors.get(0);
        }
        return total / secs;
    }

    /** Receives {@code total} messages with one consumer; returns messages per second. */
    static double consume(Child broker, int total) throws Exception {
        try (Connection c = broker.factory(false).createConnection()) {
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageConsumer mc = s.createConsumer(s.createQueue(QUEUE));
            AtomicLong got = new AtomicLong();
            long t0 = System.nanoTime();
            while (got.get() < total) {
                if (mc.receive(30_000) == null) {
                    throw new IOException("only " + got.get() + " of " + total + " messages received");
                }
                got.incrementAndGet();
            }
            return total / ((System.nanoTime() - t0) / 1e9);
        }
    }

    static void driver(Map<String, String> a) throws Exception {
        String store = a.get("store");
        String kase = a.get("case");
        Path dir = Path.of(a.get("dir"));
        int messages = Integer.parseInt(a.getOrDefault("messages", "10000"));
        deleteTree(dir);
        Files.createDirectories(dir);
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        String head = String.format(Locale.ROOT, "{\"store\":\"%s\",\"case\":\"%s\",\"messages\":%d", store, kase, messages);
        switch (kase) {
            case "send1", "send8" -> {
                try (Child b = new Child(store, dir)) {
                    int producers = kase.equals("send1") ? 1 : 8;
                    send(b, producers, Math.min(500, messages), false); // warm-up
                    double rate = send(b, producers, messages, false);
                    out.printf(Locale.ROOT, "%s,\"msgs_per_sec\":%.1f}%n", head, rate);
                }
            }
            case "consume" -> {
                try (Child b = new Child(store, dir)) {
                    send(b, 4, messages, true);
                    double rate = consume(b, messages);
                    out.printf(Locale.ROOT, "%s,\"msgs_per_sec\":%.1f}%n", head, rate);
                }
            }
            case "restart" -> {
                long emptyRss;
                try (Child b = new Child(store, dir)) {
                    emptyRss = field(b.command("rss", "rss"), "rss_kb");
                    send(b, 4, messages, true);
                }
                long clean;
                long killed;
                long rebuilt;
                long pending;
                long fullRss;
                try (Child b = new Child(store, dir)) {
                    clean = field(b.started, "start_ms");
                    pending = field(b.started, "pending");
                    fullRss = field(b.command("rss", "rss"), "rss_kb");
                    b.kill();
                }
                try (Child b = new Child(store, dir)) {
                    killed = field(b.started, "start_ms");
                    if (field(b.started, "pending") != pending) {
                        throw new IOException("pending after SIGKILL " + b.started + " != " + pending);
                    }
                }
                for (String index : new String[] {"db.data", "db.redo", "db.free", "kahadb-rs.index"}) {
                    Files.deleteIfExists(dir.resolve(index));
                }
                try (Child b = new Child(store, dir)) {
                    rebuilt = field(b.started, "start_ms");
                    if (field(b.started, "pending") != pending) {
                        throw new IOException("pending after rebuild " + b.started + " != " + pending);
                    }
                }
                out.printf(Locale.ROOT,
                        "%s,\"pending\":%d,\"restart_clean_ms\":%d,\"restart_kill_ms\":%d,\"restart_rebuild_ms\":%d,"
                                + "\"rss_empty_kb\":%d,\"rss_full_kb\":%d,\"bytes_per_pending\":%.1f}%n",
                        head, pending, clean, killed, rebuilt, emptyRss, fullRss,
                        (fullRss - emptyRss) * 1024.0 / Math.max(1, pending));
            }
            default -> throw new IllegalArgumentException("unknown case " + kase);
        }
        deleteTree(dir);
        new File(dir.toString()).delete();
    }
}
