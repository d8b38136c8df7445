package dev.kahadb.activemq.cluster;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;

import jakarta.jms.Connection;
import jakarta.jms.JMSException;
import jakarta.jms.Message;
import jakarta.jms.MessageConsumer;
import jakarta.jms.Session;

import org.apache.activemq.ActiveMQConnectionFactory;

/**
 * Drains a queue of {@link NumberedProducer}'s messages and counts what arrived: distinct
 * numbers, duplicates (a number seen again), and how many of those the broker marked as
 * redelivered (the duplicates JMS allows).
 */
public final class NumberedConsumer {
    private final BitSet received = new BitSet();
    private final List<Integer> duplicateNumbers = new ArrayList<>();
    private long messages;
    private long redeliveredDuplicates;

    /** What a drain found. */
    public BitSet received() {
        return (BitSet) received.clone();
    }

    /** Messages received, duplicates included. */
    public long messages() {
        return messages;
    }

    /** Messages whose number had been received before. */
    public long duplicates() {
        return duplicateNumbers.size();
    }

    /** The numbers of those messages, in the order they came. */
    public List<Integer> duplicateNumbers() {
        return List.copyOf(duplicateNumbers);
    }

    /** Of {@link #duplicates()}, those marked JMSRedelivered (allowed by JMS after a failure). */
    public long redeliveredDuplicates() {
        return redeliveredDuplicates;
    }

    /**
     * Receives from {@code queue} until no message came for {@code idleMs} (or {@code maxMs}
     * passed), acknowledging each one.
     *
     * @return this, for chaining
     */
    public NumberedConsumer drain(String url, String queue, long idleMs, long maxMs) throws JMSException {
        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(url);
        f.setWatchTopicAdvisories(false);
        Connection c = f.createConnection();
        try {
            c.start();
            Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
            MessageConsumer consumer = s.createConsumer(s.createQueue(queue));
            long end = System.currentTimeMillis() + maxMs;
            while (System.currentTimeMillis() < end) {
                Message m = consumer.receive(idleMs);
                if (m == null) {
                    break;
                }
                record(m);
            }
        } finally {
            c.close();
        }
        return this;
    }

    private void record(Message m) throws JMSException {
        messages++;
        int seq = m.getIntProperty(NumberedProducer.SEQ);
        if (received.get(seq)) {
            duplicateNumbers.add(seq);
            if (m.getJMSRedelivered()) {
                redeliveredDuplicates++;
            }
        } else {
            received.set(seq);
        }
    }
}
