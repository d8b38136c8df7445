package dev.kahadb.activemq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import jakarta.jms.Connection;
import jakarta.jms.DeliveryMode;
import jakarta.jms.MessageConsumer;
import jakarta.jms.MessageProducer;
import jakarta.jms.Session;
import jakarta.jms.TextMessage;
import jakarta.jms.Topic;
import jakarta.jms.XAConnection;
import jakarta.jms.XASession;
import java.io.File;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import javax.transaction.xa.XAResource;
import javax.transaction.xa.Xid;
import org.apache.activemq.ActiveMQConnectionFactory;
import org.apache.activemq.ActiveMQXAConnectionFactory;
import org.apache.activemq.broker.BrokerService;
import org.apache.activemq.broker.TransportConnector;
import org.apache.activemq.store.PersistenceAdapter;
import org.apache.activemq.store.kahadb.KahaDBPersistenceAdapter;
import org.junit.jupiter.api.Test;

/**
 * Moving a store between ActiveMQ's own KahaDB and kahadb-rs, both ways (docs/MIGRATION.md):
 * one directory, brokers started one after the other, real JMS clients over tcp.
 */
class KahaDBInteropTest {
    private static final String QUEUE = "interop.queue";
    private static final String TOPIC = "interop.topic";
    private static final String CLIENT = "interop-client";
    private static final String SUB = "interop-sub";

    /** A broker on {@code adapter}, listening on an ephemeral port. */
    private static final class Broker implements AutoCloseable {
        final BrokerService service = new BrokerService();
        final URI uri;

        Broker(String name, Path dir, PersistenceAdapter adapter) throws Exception {
            service.setBrokerName(name);
            service.setUseJmx(false);
            service.setUseShutdownHook(false);
            service.setAdvisorySupport(false);
            service.setDataDirectoryFile(dir.resolve("broker").toFile());
            service.setTmpDataDirectory(dir.resolve("tmp").toFile());
            adapter.setDirectory(dir.resolve("store").toFile());
            service.setPersistenceAdapter(adapter);
            TransportConnector c = service.addConnector("tcp://127.0.0.1:0");
            service.start();
            service.waitUntilStarted();
            uri = c.getConnectUri();
        }

        ActiveMQConnectionFactory factory() {
            ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(uri);
            f.setWatchTopicAdvisories(false);
            return f;
        }

        @Override
        public void close() throws java.io.IOException {
            try {
                service.stop();
            } catch (Exception e) {
                throw new java.io.IOException("stopping " + service.getBrokerName(), e);
            }
            service.waitUntilStopped();
        }
    }

    private static KahaDBPersistenceAdapter stock() {
        KahaDBPersistenceAdapter k = new KahaDBPersistenceAdapter();
        k.setJournalMaxFileLength(1024 * 1024);
        return k;
    }

    private static KahaRsPersistenceAdapter ours() {
        KahaRsPersistenceAdapter a = new KahaRsPersistenceAdapter();
        a.setJournalMaxFileLength(1024 * 1024);
        return a;
    }

    private static final class TestXid implements Xid {
        private final byte[] gtid;

        TestXid(String id) {
            this.gtid = id.getBytes(StandardCharsets.UTF_8);
        }

        @Override
        public int getFormatId() {
            return 42;
        }

        @Override
        public byte[] getGlobalTransactionId() {
            return gtid.clone();
        }

        @Override
        public byte[] getBranchQualifier() {
            return new byte[] {1};
        }
    }

    /**
     * Writes, through {@code broker}: 200 queue messages of which the first 50 are consumed, a
     * durable subscription with a backlog of 30 (10 more were consumed while it was online), and
     * an XA transaction that sends one queue message and is left prepared.
     */
    private static void populate(Broker broker, Xid xid) throws Exception {
        try (Connection c = broker.factory().createConnection()) {
            c.setClientID(CLIENT);
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Topic topic = s.createTopic(TOPIC);
            MessageConsumer sub = s.createDurableSubscriber(topic, SUB);
            MessageProducer tp = s.createProducer(topic);
            tp.setDeliveryMode(DeliveryMode.PERSISTENT);
            for (int i = 0; i < 10; i++) {
                tp.send(s.createTextMessage("early-" + i));
            }
            for (int i = 0; i < 10; i++) {
                assertNotNull(sub.receive(5000), "online durable message " + i);
            }
            sub.close();
            for (int i = 0; i < 30; i++) {
                tp.send(s.createTextMessage("backlog-" + i));
            }
            MessageProducer qp = s.createProducer(s.createQueue(QUEUE));
            qp.setDeliveryMode(DeliveryMode.PERSISTENT);
            for (int i = 0; i < 200; i++) {
                qp.send(s.createTextMessage("q-" + i));
            }
            MessageConsumer qc = s.createConsumer(s.createQueue(QUEUE));
            for (int i = 0; i < 50; i++) {
                TextMessage m = (TextMessage) qc.receive(5000);
                assertNotNull(m);
                assertEquals("q-" + i, m.getText());
            }
            qc.close();
        }
        ActiveMQXAConnectionFactory xf = new ActiveMQXAConnectionFactory(broker.uri);
        xf.setWatchTopicAdvisories(false);
        try (XAConnection xc = xf.createXAConnection()) {
            XASession xs = xc.createXASession();
            XAResource res = xs.getXAResource();
            res.start(xid, XAResource.TMNOFLAGS);
            MessageProducer p = xs.createProducer(xs.createQueue(QUEUE));
            p.setDeliveryMode(DeliveryMode.PERSISTENT);
            p.send(xs.createTextMessage("xa-prepared"));
            res.end(xid, XAResource.TMSUCCESS);
            assertEquals(XAResource.XA_OK, res.prepare(xid));
        }
    }

    /** Checks what {@link #populate} left, through {@code broker}, consuming all of it. */
    private static void verify(Broker broker, Xid xid) throws Exception {
        ActiveMQXAConnectionFactory xf = new ActiveMQXAConnectionFactory(broker.uri);
        xf.setWatchTopicAdvisories(false);
        try (XAConnection xc = xf.createXAConnection()) {
            XAResource res = xc.createXASession().getXAResource();
            Xid[] prepared = res.recover(XAResource.TMSTARTRSCAN);
            assertEquals(1, prepared.length, "the prepared XA transaction is recovered");
            assertArrayEquals(xid.getGlobalTransactionId(), prepared[0].getGlobalTransactionId());
            res.commit(prepared[0], false);
        }
        try (Connection c = broker.factory().createConnection()) {
            c.setClientID(CLIENT);
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageConsumer qc = s.createConsumer(s.createQueue(QUEUE));
            for (int i = 50; i < 200; i++) {
                TextMessage m = (TextMessage) qc.receive(5000);
                assertNotNull(m, "pending queue message q-" + i);
                assertEquals("q-" + i, m.getText());
            }
            TextMessage xa = (TextMessage) qc.receive(5000);
            assertNotNull(xa, "the committed XA message");
            assertEquals("xa-prepared", xa.getText());
            assertNull(qc.receive(200), "nothing else on the queue");
            MessageConsumer sub = s.createDurableSubscriber(s.createTopic(TOPIC), SUB);
            for (int i = 0; i < 30; i++) {
                TextMessage m = (TextMessage) sub.receive(5000);
                assertNotNull(m, "durable backlog message " + i);
                assertEquals("backlog-" + i, m.getText());
            }
            assertNull(sub.receive(200), "nothing else for the subscription");
        }
    }

    private static Path fresh(String name) throws Exception {
        Path dir = Path.of("target", "kahadb-rs-tests", name).toAbsolutePath();
        BrokerFixture.delete(dir);
        Files.createDirectories(dir);
        return dir;
    }

    @Test
    void stockKahaDBDirectoryOpensInKahadbRs() throws Exception {
        Path dir = fresh("interop-from-stock");
        Xid xid = new TestXid("from-stock");
        try (Broker b = new Broker("interop-stock", dir, stock())) {
            populate(b, xid);
        }
        File store = dir.resolve("store").toFile();
        assertTrue(new File(store, "db.data").exists(), "stock KahaDB wrote its index");
        try (Broker b = new Broker("interop-rs", dir, ours())) {
            verify(b, xid);
            assertTrue(!new File(store, "db.data").exists(), "the stale stock index is removed");
        }
    }

    @Test
    void kahadbRsDirectoryOpensInStockKahaDB() throws Exception {
        Path dir = fresh("interop-to-stock");
        Xid xid = new TestXid("to-stock");
        try (Broker b = new Broker("interop-rs", dir, ours())) {
            populate(b, xid);
        }
        File store = dir.resolve("store").toFile();
        String[] names = store.list();
        assertNotNull(names);
        assertTrue(Arrays.asList(names).contains("db-1.log"), Arrays.toString(names));
        try (Broker b = new Broker("interop-stock", dir, stock())) {
            verify(b, xid);
        }
        // And back again: kahadb-rs reads what stock KahaDB wrote on top of its own records.
        try (Broker b = new Broker("interop-rs-again", dir, ours())) {
            try (Connection c = b.factory().createConnection()) {
                c.start();
                Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
                assertNull(s.createConsumer(s.createQueue(QUEUE)).receive(500), "everything was consumed");
            }
        }
    }
}
