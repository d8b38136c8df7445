package dev.kahadb.activemq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;

import jakarta.jms.Connection;
import jakarta.jms.DeliveryMode;
import jakarta.jms.MessageConsumer;
import jakarta.jms.MessageProducer;
import jakarta.jms.Session;
import jakarta.jms.TextMessage;

import org.apache.activemq.ActiveMQConnectionFactory;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.kahadb.activemq.cluster.ZooKeeperServer;

/**
 * Two launchers and a real ZooKeeper server ({@code scripts/zookeeper.sh}): one is elected and
 * starts its broker, the other follows as a slave; persistent sends wait for the slave
 * (minimumReplicas 1); when the master's launcher closes, the slave is elected, starts the same
 * broker config on its copy, and every acknowledged message is delivered.
 */
class HaLauncherZooKeeperTest {
    @TempDir
    Path dir;

    private ZooKeeperServer zookeeper;
    private int zkPort;
    private final List<ReplicatedBroker> launchers = new ArrayList<>();

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            return s.getLocalPort();
        }
    }

    private static void await(String what, long seconds, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting until " + what);
            }
            Thread.sleep(20);
        }
    }

    @BeforeEach
    void startZooKeeper() throws Exception {
        zkPort = freePort();
        zookeeper = new ZooKeeperServer(new File("../scripts/zookeeper.sh").getCanonicalFile().toPath(),
                dir.resolve("zk"), zkPort);
        zookeeper.start();
    }

    @AfterEach
    void stopAll() {
        for (ReplicatedBroker rb : launchers) {
            rb.close();
        }
        if (zookeeper != null) {
            zookeeper.close();
        }
    }

    private ReplicatedBroker launch(String name, String brokerXml) throws IOException {
        ReplicatedBrokerConfig c = new ReplicatedBrokerConfig().setBrokerURI("xbean:" + brokerXml)
                .setUri("kdbr://127.0.0.1:" + freePort()).setDirectory(dir.resolve(name).toFile())
                .setMinimumReplicas(1).setReplicationTimeout(5000)
                .setZookeeper("127.0.0.1:" + zkPort).setZookeeperPath("/kahadb-rs/test").setSessionTimeout(2000);
        ReplicatedBroker rb = ReplicatedBroker.start(c);
        launchers.add(rb);
        return rb;
    }

    @Test
    void theSlaveTakesOverWithEveryAcknowledgedMessage() throws Exception {
        int port = freePort();
        Path xml = dir.resolve("ha-broker.xml");
        Files.writeString(xml, HaLauncherRulesTest.brokerXml("brokerName=\"ha-zk\" start=\"false\" useJmx=\"false\" "
                + "dataDirectory=\"" + dir.resolve("broker-data") + "\"",
                "<transportConnectors><transportConnector uri=\"tcp://127.0.0.1:" + port + "\"/></transportConnectors>"));
        ReplicatedBroker a = launch("a", xml.toString());
        ReplicatedBroker b = launch("b", xml.toString());
        await("one master with its broker and one slave", 60, () -> (a.isBrokerStarted() && "SLAVE".equals(b.getRole()))
                || (b.isBrokerStarted() && "SLAVE".equals(a.getRole())));
        ReplicatedBroker master = a.isBrokerStarted() ? a : b;
        ReplicatedBroker slave = master == a ? b : a;
        await("the slave is live", 60, () -> master.getLiveSlaves() == 1);
        long firstEpoch = master.getEpoch();

        int sent = 50;
        Connection c = new ActiveMQConnectionFactory("tcp://127.0.0.1:" + port).createConnection();
        try {
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageProducer p = s.createProducer(s.createQueue("ha.zk"));
            p.setDeliveryMode(DeliveryMode.PERSISTENT);
            for (int i = 0; i < sent; i++) {
                p.send(s.createTextMessage("m" + i));
            }
        } finally {
            c.close();
        }

        master.close();
        await("the slave becomes master and runs the broker", 60, slave::isBrokerStarted);
        assertEquals("MASTER", slave.getRole());
        assertTrue(slave.getEpoch() > firstEpoch, "a higher epoch");

        c = new ActiveMQConnectionFactory("tcp://127.0.0.1:" + port).createConnection();
        try {
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageConsumer consumer = s.createConsumer(s.createQueue("ha.zk"));
            for (int i = 0; i < sent; i++) {
                TextMessage m = (TextMessage) consumer.receive(10_000);
                assertNotNull(m, "message " + i);
                assertEquals("m" + i, m.getText());
            }
        } finally {
            c.close();
        }
    }
}
