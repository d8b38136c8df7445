package dev.kahadb.activemq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;

import javax.transaction.xa.XAResource;
import javax.transaction.xa.Xid;

import jakarta.jms.Connection;
import jakarta.jms.DeliveryMode;
import jakarta.jms.Message;
import jakarta.jms.MessageConsumer;
import jakarta.jms.MessageProducer;
import jakarta.jms.Session;
import jakarta.jms.TextMessage;
import jakarta.jms.XAConnection;
import jakarta.jms.XASession;

import org.apache.activemq.command.ActiveMQQueue;
import org.apache.activemq.store.MessageStore;
import org.junit.jupiter.api.Test;

/** Local and XA transactions, including a prepared XA transaction across a broker restart. */
class TransactionTest {

    static final class TestXid implements Xid {
        private final byte[] gtid;
        private final byte[] bq;

        TestXid(String id) {
            this.gtid = ("gtid-" + id).getBytes(StandardCharsets.UTF_8);
            this.bq = ("bq-" + id).getBytes(StandardCharsets.UTF_8);
        }

        @Override
        public int getFormatId() {
            return 0x4B52;
        }

        @Override
        public byte[] getGlobalTransactionId() {
            return gtid;
        }

        @Override
        public byte[] getBranchQualifier() {
            return bq;
        }
    }

    @Test
    void localTransactionsCommitAndRollback() throws Exception {
        try (BrokerFixture b = new BrokerFixture("tx-local")) {
            Connection c = b.factory().createConnection();
            c.start();
            Session tx = c.createSession(true, Session.SESSION_TRANSACTED);
            MessageProducer p = tx.createProducer(tx.createQueue("txq"));
            p.setDeliveryMode(DeliveryMode.PERSISTENT);
            for (int i = 0; i < 5; i++) {
                TextMessage m = tx.createTextMessage("a" + i);
                m.setIntProperty("i", i);
                p.send(m);
            }
            // Not visible before the commit.
            assertEquals(List.of(), QueueTest.receive(c, "txq", 1, 200));
            tx.commit();
            for (int i = 5; i < 10; i++) {
                TextMessage m = tx.createTextMessage("b" + i);
                m.setIntProperty("i", i);
                p.send(m);
            }
            tx.rollback();
            assertEquals(5, b.adapter.createQueueMessageStore(new ActiveMQQueue("txq")).getMessageCount());

            // Transacted receive: rolled back means redelivered; committed means gone.
            MessageConsumer consumer = tx.createConsumer(tx.createQueue("txq"));
            for (int i = 0; i < 3; i++) {
                assertNotNull(consumer.receive(5000));
            }
            tx.rollback();
            int seen = 0;
            for (int i = 0; i < 5; i++) {
                Message m = consumer.receive(5000);
                assertNotNull(m);
                assertEquals(i, m.getIntProperty("i"));
                seen++;
            }
            assertEquals(5, seen);
            tx.commit();
            assertNull(consumer.receive(200));
            c.close();
            MessageStore store = b.adapter.createQueueMessageStore(new ActiveMQQueue("txq"));
            assertEquals(0, store.getMessageCount());
            assertEquals(0, store.getMessageSize(), "size statistics after transactional acks");

            b.restart();
            c = b.factory().createConnection();
            c.start();
            assertEquals(List.of(), QueueTest.receive(c, "txq", 10, 300));
            c.close();
        }
    }

    @Test
    void preparedXaSurvivesRestartThenCommits() throws Exception {
        try (BrokerFixture b = new BrokerFixture("tx-xa-commit")) {
            XAConnection xc = b.xaFactory().createXAConnection();
            xc.start();
            XASession xs = xc.createXASession();
            XAResource res = xs.getXAResource();
            Xid xid = new TestXid("send-1");
            res.start(xid, XAResource.TMNOFLAGS);
            MessageProducer p = xs.getSession().createProducer(xs.getSession().createQueue("xaq"));
            p.setDeliveryMode(DeliveryMode.PERSISTENT);
            for (int i = 0; i < 3; i++) {
                TextMessage m = xs.getSession().createTextMessage("x" + i);
                m.setIntProperty("i", i);
                p.send(m);
            }
            res.end(xid, XAResource.TMSUCCESS);
            assertEquals(XAResource.XA_OK, res.prepare(xid));
            xc.close();

            b.restart();

            xc = b.xaFactory().createXAConnection();
            xc.start();
            xs = xc.createXASession();
            res = xs.getXAResource();
            Xid[] recovered = res.recover(XAResource.TMSTARTRSCAN);
            assertEquals(1, recovered.length);
            assertArrayEquals(xid.getGlobalTransactionId(), recovered[0].getGlobalTransactionId());
            assertArrayEquals(xid.getBranchQualifier(), recovered[0].getBranchQualifier());
            Connection c = b.factory().createConnection();
            c.start();
            assertEquals(List.of(), QueueTest.receive(c, "xaq", 1, 200));
            res.commit(recovered[0], false);
            assertEquals(QueueTest.range(0, 3), QueueTest.receive(c, "xaq", 3, 5000));
            assertEquals(0, res.recover(XAResource.TMSTARTRSCAN).length);
            c.close();
            xc.close();
        }
    }

    @Test
    void preparedXaAcksHideMessagesUntilTheOutcome() throws Exception {
        try (BrokerFixture b = new BrokerFixture("tx-xa-ack")) {
            Connection c = b.factory().createConnection();
            c.start();
            QueueTest.send(c, "xack", 0, 4);
            c.close();

            XAConnection xc = b.xaFactory().createXAConnection();
            xc.start();
            XASession xs = xc.createXASession();
            XAResource res = xs.getXAResource();
            Xid one = new TestXid("ack-1");
            res.start(one, XAResource.TMNOFLAGS);
            MessageConsumer consumer = xs.getSession().createConsumer(xs.getSession().createQueue("xack"));
            Message m0 = consumer.receive(5000);
            Message m1 = consumer.receive(5000);
            assertEquals(0, m0.getIntProperty("i"));
            assertEquals(1, m1.getIntProperty("i"));
            res.end(one, XAResource.TMSUCCESS);
            res.prepare(one);
            consumer.close();
            xc.close();

            b.restart();
            // The two acked messages are hidden while the transaction is prepared.
            assertEquals(2, b.adapter.createQueueMessageStore(new ActiveMQQueue("xack")).getMessageCount());
            c = b.factory().createConnection();
            c.start();
            Session s = c.createSession(false, Session.CLIENT_ACKNOWLEDGE);
            MessageConsumer plain = s.createConsumer(s.createQueue("xack"));
            Message a = plain.receive(5000);
            Message bb = plain.receive(5000);
            assertEquals(2, a.getIntProperty("i"));
            assertEquals(3, bb.getIntProperty("i"));
            assertNull(plain.receive(300));

            // Rolled back: the two come back.
            xc = b.xaFactory().createXAConnection();
            xc.start();
            res = xc.createXASession().getXAResource();
            Xid[] recovered = res.recover(XAResource.TMSTARTRSCAN);
            assertEquals(1, recovered.length);
            res.rollback(recovered[0]);
            xc.close();
            int[] back = new int[2];
            for (int i = 0; i < 2; i++) {
                Message m = plain.receive(5000);
                assertNotNull(m, "rolled back message " + i);
                back[i] = m.getIntProperty("i");
            }
            Arrays.sort(back);
            assertArrayEquals(new int[] {0, 1}, back);
            bb.acknowledge();
            c.close();
            MessageStore store = b.adapter.createQueueMessageStore(new ActiveMQQueue("xack"));
            assertTrue(TopicTest.waitFor(() -> store.getMessageCount() == 0), "count " + store.getMessageCount());
            assertTrue(TopicTest.waitFor(() -> store.getMessageSize() == 0), "size " + store.getMessageSize());
        }
    }

    @Test
    void preparedXaWithoutPersistentWork() throws Exception {
        try (BrokerFixture b = new BrokerFixture("tx-xa-empty")) {
            XAConnection xc = b.xaFactory().createXAConnection();
            xc.start();
            XASession xs = xc.createXASession();
            XAResource res = xs.getXAResource();
            Xid commit = new TestXid("np-commit");
            res.start(commit, XAResource.TMNOFLAGS);
            MessageProducer p = xs.getSession().createProducer(xs.getSession().createQueue("xanp"));
            p.setDeliveryMode(DeliveryMode.NON_PERSISTENT);
            TextMessage m = xs.getSession().createTextMessage("np");
            m.setIntProperty("i", 1);
            p.send(m);
            res.end(commit, XAResource.TMSUCCESS);
            res.prepare(commit);
            res.commit(commit, false);
            Xid rollback = new TestXid("np-rollback");
            res.start(rollback, XAResource.TMNOFLAGS);
            p.send(m);
            res.end(rollback, XAResource.TMSUCCESS);
            res.prepare(rollback);
            res.rollback(rollback);
            xc.close();
            Connection c = b.factory().createConnection();
            c.start();
            assertEquals(List.of(1), QueueTest.receive(c, "xanp", 2, 1000));
            c.close();
        }
    }

    @Test
    void onePhaseXaCommit() throws Exception {
        try (BrokerFixture b = new BrokerFixture("tx-xa-1pc")) {
            XAConnection xc = b.xaFactory().createXAConnection();
            xc.start();
            XASession xs = xc.createXASession();
            XAResource res = xs.getXAResource();
            Xid xid = new TestXid("1pc");
            res.start(xid, XAResource.TMNOFLAGS);
            MessageProducer p = xs.getSession().createProducer(xs.getSession().createQueue("xa1"));
            TextMessage m = xs.getSession().createTextMessage("one");
            m.setIntProperty("i", 7);
            p.send(m);
            res.end(xid, XAResource.TMSUCCESS);
            res.commit(xid, true);
            xc.close();
            Connection c = b.factory().createConnection();
            c.start();
            assertEquals(List.of(7), QueueTest.receive(c, "xa1", 2, 2000));
            c.close();
        }
    }
}
