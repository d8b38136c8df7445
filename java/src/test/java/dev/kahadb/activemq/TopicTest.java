package dev.kahadb.activemq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;

import jakarta.jms.Connection;
import jakarta.jms.DeliveryMode;
import jakarta.jms.Message;
import jakarta.jms.MessageProducer;
import jakarta.jms.Session;
import jakarta.jms.TextMessage;
import jakarta.jms.Topic;
import jakarta.jms.TopicSubscriber;

import org.apache.activemq.broker.region.policy.PolicyEntry;
import org.apache.activemq.broker.region.policy.PolicyMap;
import org.apache.activemq.command.ActiveMQTopic;
import org.apache.activemq.store.TopicMessageStore;
import org.junit.jupiter.api.Test;

/** Durable topic subscribers, online and offline, across restarts. */
class TopicTest {

    static void publish(Connection c, String topic, int from, int to) throws Exception {
        Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
        MessageProducer p = s.createProducer(s.createTopic(topic));
        p.setDeliveryMode(DeliveryMode.PERSISTENT);
        for (int i = from; i < to; i++) {
            TextMessage m = s.createTextMessage("t" + i);
            m.setIntProperty("i", i);
            m.setStringProperty("color", i % 2 == 0 ? "red" : "blue");
            p.send(m);
        }
        s.close();
    }

    static List<Integer> drain(TopicSubscriber sub, int max, long wait) throws Exception {
        List<Integer> got = new ArrayList<>();
        while (got.size() < max) {
            Message m = sub.receive(wait);
            if (m == null) {
                break;
            }
            got.add(m.getIntProperty("i"));
        }
        return got;
    }

    static Connection connect(BrokerFixture b, String clientId) throws Exception {
        Connection c = b.factory().createConnection();
        c.setClientID(clientId);
        c.start();
        return c;
    }

    @Test
    void offlineAndOnlineDurableSubscribers() throws Exception {
        try (BrokerFixture b = new BrokerFixture("topic-durable")) {
            // Two durable subscriptions, one with a selector; both go offline.
            Connection a = connect(b, "client-a");
            Session sa = a.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Topic t = sa.createTopic("prices");
            sa.createDurableSubscriber(t, "all").close();
            Connection r = connect(b, "client-r");
            Session sr = r.createSession(false, Session.AUTO_ACKNOWLEDGE);
            sr.createDurableSubscriber(t, "reds", "color = 'red'", false).close();

            Connection p = b.factory().createConnection();
            p.start();
            publish(p, "prices", 0, 50);

            TopicMessageStore store = b.adapter.createTopicMessageStore(new ActiveMQTopic("prices"));
            assertEquals(50, store.getMessageCount());
            assertEquals(50, store.getMessageCount("client-a", "all"));

            // Subscriber "all" comes back online and reads half, then goes away again.
            TopicSubscriber all = sa.createDurableSubscriber(t, "all");
            List<Integer> got = drain(all, 20, 5000);
            assertEquals(QueueTest.range(0, 20), got);
            all.close();
            a.close();
            r.close();
            p.close();

            b.restart();
            store = b.adapter.createTopicMessageStore(new ActiveMQTopic("prices"));
            assertEquals(2, store.getAllSubscriptions().length);
            assertEquals(30, store.getMessageCount("client-a", "all"));

            p = b.factory().createConnection();
            p.start();
            publish(p, "prices", 50, 60);

            a = connect(b, "client-a");
            sa = a.createSession(false, Session.AUTO_ACKNOWLEDGE);
            all = sa.createDurableSubscriber(sa.createTopic("prices"), "all");
            assertEquals(QueueTest.range(20, 60), drain(all, 100, 3000));
            r = connect(b, "client-r");
            sr = r.createSession(false, Session.AUTO_ACKNOWLEDGE);
            TopicSubscriber reds = sr.createDurableSubscriber(sr.createTopic("prices"), "reds", "color = 'red'", false);
            List<Integer> expectReds = new ArrayList<>();
            for (int i = 0; i < 60; i += 2) {
                expectReds.add(i);
            }
            assertEquals(expectReds, drain(reds, 100, 3000));

            // Online: messages published now are delivered to both.
            publish(p, "prices", 60, 64);
            assertEquals(QueueTest.range(60, 64), drain(all, 4, 5000));
            assertEquals(List.of(60, 62), drain(reds, 2, 5000));
            all.close();
            reds.close();

            // Everything consumed: the topic keeps nothing.
            assertTrue(waitFor(() -> b.adapter.createTopicMessageStore(new ActiveMQTopic("prices")).getMessageCount() == 0));

            // Unsubscribing the last subscription drops the topic from the store.
            sa.unsubscribe("all");
            sr.unsubscribe("reds");
            a.close();
            r.close();
            p.close();
            b.restart();
            assertFalse(b.adapter.getDestinations().contains(new ActiveMQTopic("prices")));
        }
    }

    @Test
    void unsubscribeDropsPendingMessages() throws Exception {
        try (BrokerFixture b = new BrokerFixture("topic-unsubscribe")) {
            Connection a = connect(b, "c1");
            Session s = a.createSession(false, Session.AUTO_ACKNOWLEDGE);
            s.createDurableSubscriber(s.createTopic("news"), "one").close();
            s.createDurableSubscriber(s.createTopic("news"), "two").close();
            publish(a, "news", 0, 10);
            TopicMessageStore store = b.adapter.createTopicMessageStore(new ActiveMQTopic("news"));
            assertEquals(10, store.getMessageCount());
            s.unsubscribe("one");
            assertEquals(10, store.getMessageCount());
            assertEquals(0, store.getMessageCount("c1", "one"));
            assertEquals(10, store.getMessageCount("c1", "two"));
            s.unsubscribe("two");
            assertEquals(0, store.getMessageCount());
            a.close();
        }
    }

    @Test
    void expiredMessagesOfOfflineSubscribersAreRemoved() throws Exception {
        try (BrokerFixture b = new BrokerFixture("topic-expiry", broker -> {
            PolicyEntry e = new PolicyEntry();
            e.setExpireMessagesPeriod(200);
            PolicyMap m = new PolicyMap();
            m.setDefaultEntry(e);
            broker.setDestinationPolicy(m);
        }, a -> { })) {
            Connection a = connect(b, "expiring-client");
            Session s = a.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Topic t = s.createTopic("ticks");
            s.createDurableSubscriber(t, "slow").close();
            MessageProducer p = s.createProducer(t);
            p.setDeliveryMode(DeliveryMode.PERSISTENT);
            p.setTimeToLive(200);
            for (int i = 0; i < 5; i++) {
                TextMessage m = s.createTextMessage("short" + i);
                m.setIntProperty("i", i);
                p.send(m);
            }
            p.setTimeToLive(0);
            TextMessage keep = s.createTextMessage("keep");
            keep.setIntProperty("i", 100);
            p.send(keep);
            TopicMessageStore store = b.adapter.createTopicMessageStore(new ActiveMQTopic("ticks"));
            // The topic's expiry task finds them through recoverExpired (store type KAHADB) while
            // the subscriber is offline.
            assertTrue(waitFor(() -> store.getMessageCount("expiring-client", "slow") == 1),
                    "pending: " + store.getMessageCount("expiring-client", "slow"));
            assertEquals(1, store.getMessageCount());
            TopicSubscriber sub = s.createDurableSubscriber(t, "slow");
            assertEquals(List.of(100), drain(sub, 10, 1000));
            sub.close();
            a.close();
        }
    }

    interface Check {
        boolean ok() throws Exception;
    }

    static boolean waitFor(Check check) throws Exception {
        long deadline = System.currentTimeMillis() + 10_000;
        while (System.currentTimeMillis() < deadline) {
            if (check.ok()) {
                return true;
            }
            Thread.sleep(20);
        }
        return check.ok();
    }
}
