package dev.kahadb.activemq;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import jakarta.jms.Connection;
import jakarta.jms.DeliveryMode;
import jakarta.jms.Message;
import jakarta.jms.MessageConsumer;
import jakarta.jms.MessageProducer;
import jakarta.jms.Session;

import org.apache.activemq.ActiveMQConnectionFactory;
import org.apache.activemq.broker.BrokerService;
import org.junit.jupiter.api.Test;

/**
 * A broker JVM ({@link Main}) killed with SIGKILL while producers send synchronously: every
 * send that returned must be there after a restart.
 */
class CrashTest {

    /** A free loopback port for the broker's replication node (the main job's default store). */
    private static int replicationPort() throws Exception {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    private static Process startBroker(Path data, int port) throws Exception {
        String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        String java = System.getProperty("java.home") + File.separator + "bin" + File.separator + "java";
        ProcessBuilder pb = new ProcessBuilder(java, "-Xmx256m", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-cp", cp, Main.class.getName(), "--uri", "tcp://127.0.0.1:" + port, "--data", data.toString(),
                "--name", "crash", "--replication", "kdbr://127.0.0.1:" + replicationPort());
        pb.redirectErrorStream(true);
        Process p = pb.start();
        BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
        CountDownLatch started = new CountDownLatch(1);
        Thread pump = new Thread(() -> {
            try {
                String line;
                while ((line = r.readLine()) != null) {
                    if (line.startsWith("kahadb-rs broker started")) {
                        started.countDown();
                    }
                }
            } catch (Exception ignored) {
                // the process died
            }
        });
        pump.setDaemon(true);
        pump.start();
        if (!started.await(60, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            throw new AssertionError("the broker process did not start");
        }
        return p;
    }

    private static int freePort() throws Exception {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    @Test
    void sigkillDuringSynchronousSends() throws Exception {
        Path data = BrokerFixture.ROOT.resolve("crash").toAbsolutePath();
        BrokerFixture.delete(data);
        int port = freePort();
        Process broker = startBroker(data, port);
        Set<String> acknowledged = ConcurrentHashMap.newKeySet();
        AtomicBoolean stop = new AtomicBoolean();
        List<Thread> producers = new ArrayList<>();
        try {
            for (int t = 0; t < 4; t++) {
                final int id = t;
                Thread th = new Thread(() -> {
                    try {
                        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory("tcp://127.0.0.1:" + port);
                        f.setWatchTopicAdvisories(false);
                        Connection c = f.createConnection();
                        c.start();
                        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
                        MessageProducer p = s.createProducer(s.createQueue("crash.queue"));
                        p.setDeliveryMode(DeliveryMode.PERSISTENT);
                        for (int i = 0; !stop.get(); i++) {
                            Message m = s.createTextMessage("payload " + i);
                            String key = id + ":" + i;
                            m.setStringProperty("key", key);
                            p.send(m); // synchronous: returns once stored
                            acknowledged.add(key);
                        }
                    } catch (Exception e) {
                        // the broker died under us
                    }
                });
                th.start();
                producers.add(th);
            }
            long deadline = System.currentTimeMillis() + 20_000;
            while (acknowledged.size() < 2000 && System.currentTimeMillis() < deadline) {
                Thread.sleep(20);
            }
            broker.destroyForcibly(); // SIGKILL on Linux
            assertTrue(broker.waitFor(30, TimeUnit.SECONDS));
        } finally {
            stop.set(true);
            broker.destroyForcibly();
            for (Thread th : producers) {
                th.join(30_000);
            }
        }
        assertTrue(acknowledged.size() > 100, "only " + acknowledged.size() + " sends before the kill");

        // Restart on the same data directory, in this JVM, and drain.
        BrokerService restarted = Main.createBroker("crash", data.toFile(), "tcp://127.0.0.1:0", "always", false);
        restarted.setUseShutdownHook(false);
        restarted.start();
        restarted.waitUntilStarted();
        Set<String> found = new HashSet<>();
        try {
            ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(
                    restarted.getTransportConnectors().get(0).getConnectUri());
            f.setWatchTopicAdvisories(false);
            Connection c = f.createConnection();
            c.start();
            Session s = c.createSession(false, Session.DUPS_OK_ACKNOWLEDGE);
            MessageConsumer consumer = s.createConsumer(s.createQueue("crash.queue"));
            Message m;
            while ((m = consumer.receive(3000)) != null) {
                assertTrue(found.add(m.getStringProperty("key")), "duplicate " + m.getStringProperty("key"));
            }
            c.close();
        } finally {
            restarted.stop();
            restarted.waitUntilStopped();
        }
        System.out.println("crash test: " + acknowledged.size() + " sends acknowledged before SIGKILL, "
                + found.size() + " messages after restart");
        Set<String> missing = new HashSet<>(acknowledged);
        missing.removeAll(found);
        assertTrue(missing.isEmpty(), missing.size() + " acknowledged sends lost, e.g. "
                + missing.stream().limit(5).toList() + " (acknowledged " + acknowledged.size() + ", found "
                + found.size() + ")");
    }
}
