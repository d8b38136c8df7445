package dev.kahadb.activemq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import jakarta.jms.BytesMessage;
import jakarta.jms.Connection;
import jakarta.jms.DeliveryMode;
import jakarta.jms.Message;
import jakarta.jms.MessageConsumer;
import jakarta.jms.MessageProducer;
import jakarta.jms.Session;

import org.apache.activemq.ActiveMQConnectionFactory;
import org.apache.activemq.command.ActiveMQQueue;
import org.junit.jupiter.api.Test;

/** Volume: a large backlog across a restart, and many producers and consumers at once. */
class LoadTest {

    @Test
    void hundredThousandPendingRecoveredInOrder() throws Exception {
        final int n = 100_000;
        try (BrokerFixture b = new BrokerFixture("load-100k")) {
            ActiveMQConnectionFactory f = b.factory();
            f.setUseAsyncSend(true);
            Connection c = f.createConnection();
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageProducer p = s.createProducer(s.createQueue("backlog"));
            p.setDeliveryMode(DeliveryMode.PERSISTENT);
            for (int i = 0; i < n; i++) {
                BytesMessage m = s.createBytesMessage();
                m.setIntProperty("i", i);
                p.send(m);
            }
            c.close();
            assertTrue(TopicTest.waitFor(
                    () -> b.adapter.createQueueMessageStore(new ActiveMQQueue("backlog")).getMessageCount() == n));
            b.restart();
            assertEquals(n, b.adapter.createQueueMessageStore(new ActiveMQQueue("backlog")).getMessageCount());
            c = b.factory().createConnection();
            c.start();
            s = c.createSession(false, Session.DUPS_OK_ACKNOWLEDGE);
            MessageConsumer consumer = s.createConsumer(s.createQueue("backlog"));
            for (int i = 0; i < n; i++) {
                Message m = consumer.receive(10_000);
                if (m == null) {
                    throw new AssertionError("message " + i + " missing");
                }
                assertEquals(i, m.getIntProperty("i"));
            }
            c.close();
            assertTrue(TopicTest.waitFor(
                    () -> b.adapter.createQueueMessageStore(new ActiveMQQueue("backlog")).getMessageCount() == 0));
        }
    }

    @Test
    void eightProducersEightConsumers() throws Exception {
        final int producers = 8;
        final int perProducer = 1500;
        final int total = producers * perProducer;
        try (BrokerFixture b = new BrokerFixture("load-8x8")) {
            Set<String> received = ConcurrentHashMap.newKeySet();
            AtomicInteger duplicates = new AtomicInteger();
            AtomicInteger count = new AtomicInteger();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            CountDownLatch allReceived = new CountDownLatch(1);
            List<Connection> connections = Collections.synchronizedList(new ArrayList<>());
            for (int i = 0; i < 8; i++) {
                Connection c = b.factory().createConnection();
                connections.add(c);
                Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
                s.createConsumer(s.createQueue("busy")).setMessageListener(m -> {
                    try {
                        String key = m.getStringProperty("key");
                        if (!received.add(key)) {
                            duplicates.incrementAndGet();
                        }
                        if (count.incrementAndGet() == total) {
                            allReceived.countDown();
                        }
                    } catch (Throwable t) {
                        failure.compareAndSet(null, t);
                    }
                });
                c.start();
            }
            List<Thread> threads = new ArrayList<>();
            for (int t = 0; t < producers; t++) {
                final int id = t;
                Thread th = new Thread(() -> {
                    try {
                        Connection c = b.factory().createConnection();
                        connections.add(c);
                        c.start();
                        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
                        MessageProducer p = s.createProducer(s.createQueue("busy"));
                        p.setDeliveryMode(DeliveryMode.PERSISTENT);
                        for (int i = 0; i < perProducer; i++) {
                            Message m = s.createTextMessage("x");
                            m.setStringProperty("key", id + ":" + i);
                            p.send(m);
                        }
                    } catch (Throwable e) {
                        failure.compareAndSet(null, e);
                    }
                });
                th.start();
                threads.add(th);
            }
            for (Thread th : threads) {
                th.join();
            }
            assertTrue(allReceived.await(60, java.util.concurrent.TimeUnit.SECONDS),
                    "received " + count.get() + " of " + total);
            Thread.sleep(300);
            for (Connection c : connections) {
                c.close();
            }
            if (failure.get() != null) {
                throw new AssertionError(failure.get());
            }
            assertEquals(0, duplicates.get());
            assertEquals(total, received.size());
            assertTrue(TopicTest.waitFor(
                    () -> b.adapter.createQueueMessageStore(new ActiveMQQueue("busy")).getMessageCount() == 0));
            b.restart();
            Connection c = b.factory().createConnection();
            c.start();
            assertEquals(List.of(), QueueTest.receive(c, "busy", 1, 300));
            c.close();
        }
    }
}
