package dev.kahadb.activemq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

import jakarta.jms.Connection;
import jakarta.jms.DeliveryMode;
import jakarta.jms.JMSException;
import jakarta.jms.MessageConsumer;
import jakarta.jms.MessageProducer;
import jakarta.jms.Session;
import jakarta.jms.TextMessage;

import org.apache.activemq.ActiveMQConnectionFactory;
import org.apache.activemq.broker.BrokerService;
import org.apache.activemq.broker.TransportConnector;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.kahadb.JournalOptions;
import dev.kahadb.Node;
import dev.kahadb.NodeOptions;
import dev.kahadb.StoreOptions;

/**
 * A real broker on a replicated store, with real JMS clients: persistent sends wait for the
 * node's {@code minimumReplicas}; with its only slave gone they fail (the broker stays up) until
 * the count is lowered or the slave is back; after the master stops, the slave is promoted and
 * a broker on it delivers every message whose send was acknowledged, in order.
 */
class ReplicatedBrokerTest {
    private static final String QUEUE = "replicated.orders";

    @TempDir
    Path dir;

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    private NodeOptions options(String name, int minimumReplicas) throws IOException {
        return new NodeOptions().directory(dir.resolve(name)).uri("kdbr://127.0.0.1:" + freePort())
                .minimumReplicas(minimumReplicas).replicationTimeout(Duration.ofMillis(700))
                .store(new StoreOptions().journal(new JournalOptions().maxFileLength(4 << 20)));
    }

    private static BrokerService broker(String name, Node node) throws Exception {
        BrokerService b = new BrokerService();
        b.setBrokerName(name);
        b.setUseJmx(false);
        b.setUseShutdownHook(false);
        b.setAdvisorySupport(false);
        b.setDataDirectoryFile(node.directory().resolve("broker").toFile());
        KahaRsPersistenceAdapter adapter = new KahaRsPersistenceAdapter();
        adapter.setNode(node);
        b.setPersistenceAdapter(adapter);
        b.addConnector("tcp://127.0.0.1:0");
        b.start();
        b.waitUntilStarted();
        return b;
    }

    private static URI uri(BrokerService b) throws Exception {
        TransportConnector c = b.getTransportConnectors().get(0);
        return c.getConnectUri();
    }

    /** Sends numbered messages from {@code from}; returns the numbers whose send succeeded. */
    private static List<Integer> send(Session s, MessageProducer p, int from, int count) {
        List<Integer> ok = new ArrayList<>();
        for (int i = from; i < from + count; i++) {
            try {
                p.send(s.createTextMessage("m" + i));
                ok.add(i);
            } catch (JMSException e) {
                // a failed send is not acknowledged: not counted
            }
        }
        return ok;
    }

    @Test
    void sendsWaitForReplicasAndSurviveFailover() throws Exception {
        Node a = Node.open(options("a", 1));
        Node b = Node.open(options("b", 1));
        try {
            a.startMaster(1);
            b.startSlave(a.uri());
            assertTrue(a.waitForLiveSlaves(1, Duration.ofSeconds(30)), "the slave goes live");
            BrokerService broker = broker("replicated-a", a);
            Set<Integer> acked = new LinkedHashSet<>();
            try {
                ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(uri(broker));
                f.setWatchTopicAdvisories(false);
                try (Connection c = f.createConnection()) {
                    c.start();
                    Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
                    MessageProducer p = s.createProducer(s.createQueue(QUEUE));
                    p.setDeliveryMode(DeliveryMode.PERSISTENT);
                    List<Integer> first = send(s, p, 0, 200);
                    assertEquals(200, first.size(), "every send acknowledged with a live slave");
                    acked.addAll(first);

                    // The only slave goes: persistent sends fail after the timeout, the broker stays.
                    b.stop();
                    long t0 = System.nanoTime();
                    JMSException e = assertThrows(JMSException.class, () -> p.send(s.createTextMessage("lost?")));
                    long waitedMs = (System.nanoTime() - t0) / 1_000_000;
                    System.out.printf("send without a slave failed after %d ms: %s%n", waitedMs, e.getMessage());
                    assertTrue(waitedMs >= 600, "the send waited for the replication timeout");
                    assertTrue(String.valueOf(e.getMessage()).contains("REPLICATION_TIMEOUT")
                            || String.valueOf(e.getMessage()).contains("replicas"), e.getMessage());
                    assertTrue(broker.isStarted(), "a replication timeout does not stop the broker");

                    // The slave is back: sends succeed again.
                    b.startSlave(a.uri());
                    assertTrue(a.waitForLiveSlaves(1, Duration.ofSeconds(30)));
                    List<Integer> second = send(s, p, 1000, 200);
                    assertEquals(200, second.size());
                    acked.addAll(second);
                    // minimumReplicas 0 lets the master go on alone.
                    b.stop();
                    a.setMinimumReplicas(0);
                    List<Integer> alone = send(s, p, 2000, 50);
                    assertEquals(50, alone.size());
                    acked.addAll(alone);
                    // And the slave catches up on what it missed when it comes back.
                    a.setMinimumReplicas(1);
                    b.startSlave(a.uri());
                    assertTrue(a.waitForLiveSlaves(1, Duration.ofSeconds(30)));
                    List<Integer> last = send(s, p, 3000, 100);
                    assertEquals(100, last.size());
                    acked.addAll(last);
                }
            } finally {
                broker.stop();
                broker.waitUntilStopped();
            }

            // Failover: the master stops; the slave is promoted and serves every acknowledged message.
            a.stop();
            b.promote(2);
            BrokerService onB = broker("replicated-b", b);
            try {
                ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(uri(onB));
                f.setWatchTopicAdvisories(false);
                List<Integer> received = new ArrayList<>();
                Set<String> others = new LinkedHashSet<>();
                try (Connection c = f.createConnection()) {
                    c.start();
                    Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
                    MessageConsumer consumer = s.createConsumer(s.createQueue(QUEUE));
                    while (true) {
                        TextMessage m = (TextMessage) consumer.receive(2000);
                        if (m == null) {
                            break;
                        }
                        String text = m.getText();
                        if (text.startsWith("m")) {
                            received.add(Integer.parseInt(text.substring(1)));
                        } else {
                            others.add(text);
                        }
                    }
                }
                System.out.printf("acknowledged %d, received after failover %d (+%d unacknowledged)%n",
                        acked.size(), received.size(), others.size());
                assertEquals(new ArrayList<>(acked), received, "every acknowledged message, in order, once");
                assertFalse(received.isEmpty());
                assertNotNull(b.status());
            } finally {
                onB.stop();
                onB.waitUntilStopped();
            }
        } finally {
            b.close();
            a.close();
        }
    }
}
