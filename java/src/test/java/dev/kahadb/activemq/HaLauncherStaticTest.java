package dev.kahadb.activemq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.BooleanSupplier;

import javax.management.MBeanServer;
import javax.management.ObjectName;

import jakarta.jms.Connection;
import jakarta.jms.DeliveryMode;
import jakarta.jms.MessageConsumer;
import jakarta.jms.MessageProducer;
import jakarta.jms.Session;
import jakarta.jms.TextMessage;

import org.apache.activemq.ActiveMQConnectionFactory;
import org.apache.activemq.broker.BrokerService;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.kahadb.Node;

/**
 * The launcher with the static elector (a single node, no ZooKeeper): it becomes master, starts
 * the broker of its brokerURI on the replicated store, a JMS client sends and receives through
 * it, the MBean shows the role, and close stops everything.
 */
class HaLauncherStaticTest {
    @TempDir
    Path dir;

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    private static void await(String what, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting until " + what);
            }
            Thread.sleep(20);
        }
    }

    private static void sendOne(int port, String text) throws Exception {
        Connection c = new ActiveMQConnectionFactory("tcp://127.0.0.1:" + port).createConnection();
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageProducer p = s.createProducer(s.createQueue("ha.kept"));
            p.setDeliveryMode(DeliveryMode.PERSISTENT);
            p.send(s.createTextMessage(text));
        } finally {
            c.close();
        }
    }

    private static String receiveOne(int port) throws Exception {
        Connection c = new ActiveMQConnectionFactory("tcp://127.0.0.1:" + port).createConnection();
        try {
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            TextMessage m = (TextMessage) s.createConsumer(s.createQueue("ha.kept")).receive(10_000);
            assertNotNull(m, "the message stored before the role change");
            return m.getText();
        } finally {
            c.close();
        }
    }

    private void roundTrip(String brokerURI, int port) throws Exception {
        String uri = "kdbr://127.0.0.1:" + freePort();
        ReplicatedBrokerConfig config = new ReplicatedBrokerConfig().setBrokerURI(brokerURI).setUri(uri)
                .setDirectory(dir.resolve("node").toFile()).setZookeeper("none");
        MBeanServer jmx = ManagementFactory.getPlatformMBeanServer();
        ObjectName name = new ObjectName("dev.kahadb:type=ReplicatedBroker,name=" + ObjectName.quote(uri));
        ReplicatedBroker rb = ReplicatedBroker.start(config);
        BrokerService broker;
        Node node;
        try {
            await("the broker runs", rb::isBrokerStarted);
            broker = rb.broker();
            node = rb.node();
            assertTrue(broker.getPersistenceAdapter() instanceof KahaRsPersistenceAdapter);
            assertEquals(Node.Role.MASTER, node.role());
            assertEquals("MASTER", jmx.getAttribute(name, "Role"));
            assertEquals(node.epoch(), (long) (Long) jmx.getAttribute(name, "Epoch"));
            assertTrue((Boolean) jmx.getAttribute(name, "BrokerStarted"));
            assertEquals(uri, jmx.getAttribute(name, "MasterUri"));
            String status = (String) jmx.getAttribute(name, "ReplicationStatus");
            assertNotNull(status);
            assertTrue(status.contains("master"), status);

            ActiveMQConnectionFactory factory = new ActiveMQConnectionFactory("tcp://127.0.0.1:" + port);
            Connection c = factory.createConnection();
            try {
                c.start();
                Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
                MessageProducer p = s.createProducer(s.createQueue("ha.queue"));
                p.setDeliveryMode(DeliveryMode.PERSISTENT);
                for (int i = 0; i < 20; i++) {
                    p.send(s.createTextMessage("m" + i));
                }
                MessageConsumer consumer = s.createConsumer(s.createQueue("ha.queue"));
                for (int i = 0; i < 20; i++) {
                    TextMessage m = (TextMessage) consumer.receive(10_000);
                    assertNotNull(m, "message " + i);
                    assertEquals("m" + i, m.getText());
                }
            } finally {
                c.close();
            }
            assertTrue(Files.exists(dir.resolve("node").resolve("db-1.log")), "the broker stored in the node's directory");

            // Losing mastership stops the broker at once (on the event's thread); becoming master
            // again starts a fresh broker from brokerURI, which finds what the first one stored.
            sendOne(port, "kept");
            rb.listener.becameSlave("kdbr://127.0.0.1:1", node.epoch());
            assertFalse(rb.isBrokerStarted());
            assertTrue(broker.isStopped());
            assertEquals("SLAVE", jmx.getAttribute(name, "Role"));
            rb.listener.becameMaster(node.epoch());
            await("the broker runs again", rb::isBrokerStarted);
            assertTrue(rb.broker() != broker, "a fresh broker");
            broker = rb.broker();
            assertEquals("kept", receiveOne(port));
        } finally {
            rb.close();
        }
        assertTrue(broker.isStopped());
        assertTrue(node.isClosed());
        assertFalse(rb.isBrokerStarted());
        assertEquals("STOPPED", rb.getRole());
        assertFalse(jmx.isRegistered(name));
        rb.close();
    }

    @Test
    void xbeanBrokerOnTheStaticElector() throws Exception {
        int port = freePort();
        Path xml = dir.resolve("ha-broker.xml");
        Files.writeString(xml, HaLauncherRulesTest.brokerXml("brokerName=\"ha-test\" start=\"false\" useJmx=\"false\" "
                + "dataDirectory=\"" + dir.resolve("broker-data") + "\"",
                "<transportConnectors><transportConnector uri=\"tcp://127.0.0.1:" + port + "\"/></transportConnectors>"));
        roundTrip("xbean:" + xml, port);
    }

    @Test
    void brokerUriOnTheStaticElector() throws Exception {
        int port = freePort();
        roundTrip("broker:(tcp://127.0.0.1:" + port + ")?brokerName=ha-uri&useJmx=false&start=false&dataDirectory="
                + dir.resolve("broker-data"), port);
    }

    @Test
    /** A self-starting broker config, a bad kdbr URI, an unreachable ZooKeeper: an error, nothing started. */
    void nothingStartsOnAMisconfiguration() throws Exception {
        Path node = dir.resolve("node");
        String uri = "kdbr://127.0.0.1:" + freePort();
        ObjectName name = new ObjectName("dev.kahadb:type=ReplicatedBroker,name=" + ObjectName.quote(uri));
        Path a = dir.resolve("a.xml");
        Files.writeString(a, HaLauncherRulesTest.brokerXml("brokerName=\"a\" useJmx=\"false\"", ""));
        String selfStarting = "xbean:" + a;
        ReplicatedBrokerConfig c = new ReplicatedBrokerConfig().setBrokerURI(selfStarting).setUri(uri)
                .setDirectory(node.toFile()).setZookeeper("none");
        assertThrows(IllegalArgumentException.class, () -> ReplicatedBroker.start(c));
        c.setBrokerURI("broker:(tcp://127.0.0.1:0)?useJmx=false").setUri("kdbr://127.0.0.1");
        assertThrows(IllegalArgumentException.class, () -> ReplicatedBroker.start(c));
        // ZooKeeper unreachable: a clear error before the node opens.
        c.setUri(uri).setZookeeper("127.0.0.1:" + freePort()).setSessionTimeout(2000);
        String m = assertThrows(IOException.class, () -> ReplicatedBroker.start(c)).getMessage();
        assertTrue(m.contains("ZooKeeper is unreachable"), m);
        assertFalse(Files.exists(node), "the node's directory was not created");
        assertFalse(ManagementFactory.getPlatformMBeanServer().isRegistered(name));
    }

    /** A broker that cannot start (its port is taken) makes the node leave the election. */
    @Test
    void aBrokerThatFailsToStartMakesTheNodeResign() throws Exception {
        try (ServerSocket taken = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            Path xml = dir.resolve("ha-broker.xml");
            Files.writeString(xml, HaLauncherRulesTest.brokerXml("brokerName=\"ha-fail\" start=\"false\" "
                    + "useJmx=\"false\" dataDirectory=\"" + dir.resolve("broker-data") + "\"",
                    "<transportConnectors><transportConnector uri=\"tcp://127.0.0.1:" + taken.getLocalPort()
                    + "\"/></transportConnectors>"));
            String uri = "kdbr://127.0.0.1:" + freePort();
            ReplicatedBroker rb = ReplicatedBroker.start(new ReplicatedBrokerConfig().setBrokerURI("xbean:" + xml)
                    .setUri(uri).setDirectory(dir.resolve("node").toFile()).setZookeeper("none"));
            try {
                String why = rb.failure().get(30, java.util.concurrent.TimeUnit.SECONDS);
                assertTrue(why.contains("failed to start"), why);
                assertNotNull(rb.getLastError());
                await("the node is closed", () -> rb.node().isClosed());
                assertFalse(rb.isBrokerStarted());
                ObjectName name = new ObjectName("dev.kahadb:type=ReplicatedBroker,name=" + ObjectName.quote(uri));
                await("the MBean is gone", () -> !ManagementFactory.getPlatformMBeanServer().isRegistered(name));
            } finally {
                rb.close();
            }
        }
    }
}
