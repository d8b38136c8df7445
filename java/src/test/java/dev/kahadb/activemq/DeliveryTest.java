package dev.kahadb.activemq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;

import jakarta.jms.Connection;
import jakarta.jms.DeliveryMode;
import jakarta.jms.Message;
import jakarta.jms.MessageConsumer;
import jakarta.jms.MessageProducer;
import jakarta.jms.Session;
import jakarta.jms.TextMessage;

import org.apache.activemq.ActiveMQConnection;
import org.apache.activemq.broker.region.policy.PolicyEntry;
import org.apache.activemq.broker.region.policy.PolicyMap;
import org.apache.activemq.command.ActiveMQQueue;
import org.junit.jupiter.api.Test;

/** Redelivery and the dead letter queue; message priority. */
class DeliveryTest {

    @Test
    void redeliveryThenDeadLetterQueue() throws Exception {
        try (BrokerFixture b = new BrokerFixture("delivery-dlq")) {
            Connection c = b.factory().createConnection();
            ((ActiveMQConnection) c).getRedeliveryPolicy().setMaximumRedeliveries(2);
            c.start();
            QueueTest.send(c, "poison", 0, 1);
            Session s = c.createSession(true, Session.SESSION_TRANSACTED);
            MessageConsumer consumer = s.createConsumer(s.createQueue("poison"));
            int deliveries = 0;
            while (true) {
                Message m = consumer.receive(2000);
                if (m == null) {
                    break;
                }
                assertEquals(deliveries > 0, m.getJMSRedelivered());
                deliveries++;
                s.rollback();
            }
            assertEquals(3, deliveries);
            consumer.close();
            c.close();
            b.restart();
            c = b.factory().createConnection();
            c.start();
            assertEquals(List.of(), QueueTest.receive(c, "poison", 1, 300));
            assertEquals(List.of(0), QueueTest.receive(c, "ActiveMQ.DLQ", 5, 3000));
            c.close();
            assertEquals(0, b.adapter.createQueueMessageStore(new ActiveMQQueue("ActiveMQ.DLQ")).getMessageCount());
        }
    }

    @Test
    void redeliveredFlagPersistsAcrossRestart() throws Exception {
        try (BrokerFixture b = new BrokerFixture("delivery-persist-redelivered", broker -> {
            PolicyEntry e = new PolicyEntry();
            e.setPersistJMSRedelivered(true);
            PolicyMap m = new PolicyMap();
            m.setDefaultEntry(e);
            broker.setDestinationPolicy(m);
        }, a -> { })) {
            Connection c = b.factory().createConnection();
            c.start();
            QueueTest.send(c, "redelivered", 0, 3);
            Session s = c.createSession(false, Session.CLIENT_ACKNOWLEDGE);
            MessageConsumer consumer = s.createConsumer(s.createQueue("redelivered"));
            for (int i = 0; i < 3; i++) {
                assertNotNull(consumer.receive(5000));
            }
            c.close(); // not acknowledged
            b.restart();
            c = b.factory().createConnection();
            c.start();
            s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            consumer = s.createConsumer(s.createQueue("redelivered"));
            for (int i = 0; i < 3; i++) {
                Message m = consumer.receive(5000);
                assertNotNull(m);
                assertEquals(i, m.getIntProperty("i"));
                assertTrue(m.getJMSRedelivered(), "redelivered flag kept by updateMessage");
            }
            assertNull(consumer.receive(200));
            c.close();
        }
    }

    @Test
    void prioritizedQueueDeliversHighPriorityFirst() throws Exception {
        try (BrokerFixture b = new BrokerFixture("delivery-priority", broker -> {
            PolicyEntry e = new PolicyEntry();
            e.setPrioritizedMessages(true);
            PolicyMap m = new PolicyMap();
            m.setDefaultEntry(e);
            broker.setDestinationPolicy(m);
        }, a -> { })) {
            Connection c = b.factory().createConnection();
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageProducer p = s.createProducer(s.createQueue("prio"));
            p.setDeliveryMode(DeliveryMode.PERSISTENT);
            int[] priorities = {0, 4, 9, 1, 4, 8, 0, 9, 5, 3};
            for (int i = 0; i < priorities.length; i++) {
                TextMessage m = s.createTextMessage("p" + i);
                m.setIntProperty("i", i);
                p.send(m, DeliveryMode.PERSISTENT, priorities[i], 0);
            }
            c.close();
            b.restart(); // read back from the store's lanes
            c = b.factory().createConnection();
            c.start();
            s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageConsumer consumer = s.createConsumer(s.createQueue("prio"));
            List<Integer> got = new ArrayList<>();
            for (int i = 0; i < priorities.length; i++) {
                Message m = consumer.receive(5000);
                assertNotNull(m);
                got.add(m.getJMSPriority());
            }
            for (int i = 1; i < got.size(); i++) {
                int lanePrev = lane(got.get(i - 1));
                int lane = lane(got.get(i));
                assertTrue(lanePrev <= lane, "lane order broken: " + got);
            }
            c.close();
        }
    }

    private static int lane(int priority) {
        return priority > 4 ? 0 : priority == 4 ? 1 : 2;
    }
}
