package dev.kahadb.activemq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Collections;
import java.util.Enumeration;
import java.util.List;

import jakarta.jms.Connection;
import jakarta.jms.DeliveryMode;
import jakarta.jms.Message;
import jakarta.jms.MessageConsumer;
import jakarta.jms.MessageProducer;
import jakarta.jms.Queue;
import jakarta.jms.QueueBrowser;
import jakarta.jms.Session;
import jakarta.jms.TextMessage;

import org.apache.activemq.command.ActiveMQQueue;
import org.apache.activemq.store.MessageStore;
import org.junit.jupiter.api.Test;

/** Queues through a real broker and JMS clients: send, receive, restart, browse, statistics. */
class QueueTest {

    static void send(Connection c, String queue, int from, int to) throws Exception {
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageProducer p = s.createProducer(s.createQueue(queue));
        p.setDeliveryMode(DeliveryMode.PERSISTENT);
        for (int i = from; i < to; i++) {
            TextMessage m = s.createTextMessage("m" + i);
            m.setIntProperty("i", i);
            p.send(m);
        }
        s.close();
    }

    static List<Integer> receive(Connection c, String queue, int max, long waitMillis) throws Exception {
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageConsumer consumer = s.createConsumer(s.createQueue(queue));
        List<Integer> got = new ArrayList<>();
        while (got.size() < max) {
            Message m = consumer.receive(waitMillis);
            if (m == null) {
                break;
            }
            got.add(m.getIntProperty("i"));
        }
        s.close();
        return got;
    }

    static List<Integer> range(int from, int to) {
        List<Integer> l = new ArrayList<>();
        for (int i = from; i < to; i++) {
            l.add(i);
        }
        return l;
    }

    @Test
    void sendReceiveAndRestart() throws Exception {
        try (BrokerFixture b = new BrokerFixture("queue-basic")) {
            Connection c = b.factory().createConnection();
            c.start();
            send(c, "q1", 0, 100);
            assertEquals(range(0, 40), receive(c, "q1", 40, 5000));
            c.close();

            MessageStore store = b.adapter.createQueueMessageStore(new ActiveMQQueue("q1"));
            assertEquals(60, store.getMessageCount());
            assertTrue(store.getMessageSize() > 60 * 10);

            b.restart();
            store = b.adapter.createQueueMessageStore(new ActiveMQQueue("q1"));
            assertEquals(60, store.getMessageCount());
            assertTrue(b.adapter.getDestinations().contains(new ActiveMQQueue("q1")));
            assertTrue(b.adapter.size() > 0);

            c = b.factory().createConnection();
            c.start();
            assertEquals(range(40, 100), receive(c, "q1", 100, 5000));
            assertEquals(List.of(), receive(c, "q1", 1, 200));
            c.close();
            assertEquals(0, store.getMessageCount());
            assertEquals(0, store.getMessageSize());
        }
    }

    @Test
    void browse() throws Exception {
        try (BrokerFixture b = new BrokerFixture("queue-browse")) {
            Connection c = b.factory().createConnection();
            c.start();
            send(c, "browsed", 0, 25);
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = s.createQueue("browsed");
            QueueBrowser browser = s.createBrowser(q);
            List<Integer> seen = new ArrayList<>();
            for (Enumeration<?> e = browser.getEnumeration(); e.hasMoreElements();) {
                seen.add(((Message) e.nextElement()).getIntProperty("i"));
            }
            browser.close();
            assertEquals(range(0, 25), seen);
            // Browsing consumes nothing.
            assertEquals(range(0, 25), receive(c, "browsed", 25, 5000));
            c.close();
        }
    }

    @Test
    void deleteAllMessagesOnStartup() throws Exception {
        try (BrokerFixture b = new BrokerFixture("queue-delete-all")) {
            Connection c = b.factory().createConnection();
            c.start();
            send(c, "doomed", 0, 10);
            c.close();
            b.stop();
            b.start(true);
            MessageStore store = b.adapter.createQueueMessageStore(new ActiveMQQueue("doomed"));
            assertEquals(0, store.getMessageCount());
            c = b.factory().createConnection();
            c.start();
            assertEquals(List.of(), receive(c, "doomed", 1, 300));
            send(c, "doomed", 10, 12);
            assertEquals(range(10, 12), receive(c, "doomed", 2, 5000));
            c.close();
        }
    }

    @Test
    void largeMessage() throws Exception {
        try (BrokerFixture b = new BrokerFixture("queue-large")) {
            byte[] big = new byte[10 * 1024 * 1024];
            for (int i = 0; i < big.length; i++) {
                big[i] = (byte) (i * 31 + (i >>> 13));
            }
            Connection c = b.factory().createConnection();
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageProducer p = s.createProducer(s.createQueue("big"));
            p.setDeliveryMode(DeliveryMode.PERSISTENT);
            jakarta.jms.BytesMessage m = s.createBytesMessage();
            m.writeBytes(big);
            p.send(m);
            c.close();
            b.restart();
            c = b.factory().createConnection();
            c.start();
            s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            jakarta.jms.BytesMessage got = (jakarta.jms.BytesMessage) s.createConsumer(s.createQueue("big")).receive(10000);
            assertNotNull(got);
            byte[] back = new byte[big.length];
            assertEquals(big.length, got.readBytes(back));
            assertTrue(java.util.Arrays.equals(big, back));
            assertNull(s.createConsumer(s.createQueue("big")).receive(200));
            c.close();
        }
    }

    @Test
    void expiredMessagesAreNotDelivered() throws Exception {
        try (BrokerFixture b = new BrokerFixture("queue-expiry")) {
            Connection c = b.factory().createConnection();
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageProducer p = s.createProducer(s.createQueue("expiring"));
            p.setDeliveryMode(DeliveryMode.PERSISTENT);
            p.setTimeToLive(300);
            for (int i = 0; i < 5; i++) {
                TextMessage m = s.createTextMessage("short" + i);
                m.setIntProperty("i", i);
                p.send(m);
            }
            p.setTimeToLive(0);
            TextMessage keep = s.createTextMessage("keep");
            keep.setIntProperty("i", 99);
            p.send(keep);
            Thread.sleep(600);
            b.restart();
            c = b.factory().createConnection();
            c.start();
            assertEquals(List.of(99), receive(c, "expiring", 10, 2000));
            // Expired persistent messages go to the dead letter queue.
            List<Integer> dlq = receive(c, "ActiveMQ.DLQ", 10, 2000);
            Collections.sort(dlq);
            assertEquals(range(0, 5), dlq);
            c.close();
        }
    }
}
