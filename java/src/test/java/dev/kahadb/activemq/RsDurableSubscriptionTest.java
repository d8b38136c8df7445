package dev.kahadb.activemq;

import jakarta.jms.DeliveryMode;
import jakarta.jms.Message;
import jakarta.jms.MessageProducer;
import jakarta.jms.Session;
import jakarta.jms.TextMessage;
import jakarta.jms.Topic;
import jakarta.jms.TopicSubscriber;
import org.apache.activemq.store.PersistenceAdapter;
import org.apache.activemq.usecases.DurableSubscriptionTestSupport;

/** ActiveMQ's durable subscription use cases on kahadb-rs (the broker deletes all at a fresh start). */
public class RsDurableSubscriptionTest extends DurableSubscriptionTestSupport {

    @Override
    protected PersistenceAdapter createPersistenceAdapter() throws Exception {
        return SuiteSupport.adapter("durable", false);
    }

    /**
     * The inherited version sleeps exactly the time to live and then expects the third message to
     * have expired. The client expires a message only once the clock is strictly past its
     * expiration, so when the send, the resubscribe and the first receive all fall in one
     * millisecond (a fast store makes that common) the message is still live at the boundary and
     * the inherited test fails at random. This is the same scenario with the wait past the
     * boundary made explicit.
     */
    @Override
    public void testMessageExpire() throws Exception {
        long ttl = 1000;
        Session session = connection.createSession(false, Session.AUTO_ACKNOWLEDGE);
        Topic topic = session.createTopic("TestTopic");
        TopicSubscriber consumer = session.createDurableSubscriber(topic, "sub1");
        MessageProducer producer = session.createProducer(topic);
        producer.setDeliveryMode(DeliveryMode.PERSISTENT);
        producer.setTimeToLive(ttl);
        connection.start();

        producer.send(session.createTextMessage("Msg:1"));
        assertText("Msg:1", consumer.receive(ttl));
        consumer.close();

        producer.send(session.createTextMessage("Msg:2"));
        TextMessage third = session.createTextMessage("Msg:3");
        producer.send(third);
        long expiresAt = third.getJMSExpiration();
        assertTrue("the producer set an expiration", expiresAt > 0);

        consumer = session.createDurableSubscriber(topic, "sub1");
        assertText("Msg:2", consumer.receive(ttl));
        while (System.currentTimeMillis() <= expiresAt) {
            Thread.sleep(Math.max(1, expiresAt - System.currentTimeMillis() + 1));
        }
        assertNull("Msg:3 expired and must not be delivered", consumer.receive(ttl));
    }

    private static void assertText(String expected, Message m) throws Exception {
        assertNotNull("expected " + expected + " but got nothing", m);
        assertEquals(expected, ((TextMessage) m).getText());
    }
}
