package dev.kahadb.activemq.cluster;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import jakarta.jms.Connection;
import jakarta.jms.DeliveryMode;
import jakarta.jms.JMSException;
import jakarta.jms.MessageProducer;
import jakarta.jms.Session;
import jakarta.jms.TextMessage;

import org.apache.activemq.ActiveMQConnection;
import org.apache.activemq.ActiveMQConnectionFactory;

/**
 * A JMS producer on a thread of its own sending numbered persistent messages (int property
 * {@code seq}, 0, 1, 2, ...) to a queue, synchronously: a send that returned is acknowledged by
 * the broker, which stored it (and, with minimumReplicas, replicated it). Over a
 * {@code failover:} URL a send in flight when the master dies is resent to the next one and
 * returns once that one acknowledged it.
 */
public final class NumberedProducer implements AutoCloseable {
    /** The property that carries the number. */
    public static final String SEQ = "seq";

    private final String url;
    private final String queue;
    private final int bodyBytes;
    private final long pauseMs;
    private final Thread thread;
    private volatile boolean stopping;
    private final AtomicLong attempted = new AtomicLong();
    private final AtomicLong failed = new AtomicLong();
    private final BitSet acked = new BitSet();
    /** System.nanoTime() of each acknowledgement, in the order they came. */
    private long[] ackTimes = new long[1024];
    private int ackCount;
    private volatile String lastError;

    /**
     * @param pauseMs pause between sends (0: as fast as acknowledgements come)
     */
    public NumberedProducer(String url, String queue, int bodyBytes, long pauseMs) {
        this.url = url;
        this.queue = queue;
        this.bodyBytes = bodyBytes;
        this.pauseMs = pauseMs;
        this.thread = new Thread(this::run, "numbered producer " + queue);
        this.thread.setDaemon(true);
    }

    public NumberedProducer start() {
        thread.start();
        return this;
    }

    private void run() {
        String body = "x".repeat(Math.max(0, bodyBytes));
        int seq = 0;
        while (!stopping) {
            Connection c = null;
            try {
                ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(url);
                f.setWatchTopicAdvisories(false);
                c = f.createConnection();
                c.start();
                Session s = c.createSession(false, Session.AUTO_ACKNOWLEDGE);
                MessageProducer p = s.createProducer(s.createQueue(queue));
                p.setDeliveryMode(DeliveryMode.PERSISTENT);
                while (!stopping) {
                    TextMessage m = s.createTextMessage(body);
                    m.setIntProperty(SEQ, seq);
                    attempted.incrementAndGet();
                    try {
                        p.send(m);
                        recordAck(seq);
                    } catch (JMSException e) {
                        // Refused (e.g. too few replicas in time): not acknowledged.
                        failed.incrementAndGet();
                        lastError = e.toString();
                        if (((ActiveMQConnection) c).isClosed() || ((ActiveMQConnection) c).isTransportFailed()) {
                            seq++;
                            throw e;
                        }
                    }
                    seq++;
                    if (pauseMs > 0) {
                        Thread.sleep(pauseMs);
                    }
                }
            } catch (InterruptedException e) {
                return;
            } catch (JMSException | RuntimeException e) {
                lastError = e.toString();
                try {
                    Thread.sleep(100);
                } catch (InterruptedException ie) {
                    return;
                }
            } finally {
                if (c != null) {
                    try {
                        c.close();
                    } catch (JMSException e) {
                        // closing a failed connection
                    }
                }
            }
        }
    }

    private synchronized void recordAck(int seq) {
        acked.set(seq);
        if (ackCount == ackTimes.length) {
            long[] a = new long[ackTimes.length * 2];
            System.arraycopy(ackTimes, 0, a, 0, ackCount);
            ackTimes = a;
        }
        ackTimes[ackCount++] = System.nanoTime();
        notifyAll();
    }

    /** Waits until at least {@code n} sends have been acknowledged. */
    public synchronized boolean awaitAcked(int n, long timeoutMs) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (ackCount < n) {
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                return false;
            }
            TimeUnit.NANOSECONDS.timedWait(this, left);
        }
        return true;
    }

    /** The first acknowledgement at or after {@code nanos} (System.nanoTime()), waiting for one; -1 if none came. */
    public synchronized long firstAckAfter(long nanos, long timeoutMs) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (true) {
            for (int i = ackCount - 1; i >= 0 && ackTimes[i] >= nanos; i--) {
                if (i == 0 || ackTimes[i - 1] < nanos) {
                    return ackTimes[i];
                }
            }
            long left = deadline - System.nanoTime();
            if (left <= 0) {
                return -1;
            }
            TimeUnit.NANOSECONDS.timedWait(this, left);
        }
    }

    /** Stops sending (a send in flight finishes or is abandoned after {@code timeoutMs}). */
    public void stop(long timeoutMs) throws InterruptedException {
        stopping = true;
        thread.join(timeoutMs);
        if (thread.isAlive()) {
            thread.interrupt();
            thread.join(timeoutMs);
        }
    }

    /** Sends started. */
    public long attempted() {
        return attempted.get();
    }

    /** Sends that failed with an error (not acknowledged). */
    public long failed() {
        return failed.get();
    }

    public synchronized int ackedCount() {
        return ackCount;
    }

    /** The numbers of the acknowledged messages. */
    public synchronized BitSet acked() {
        return (BitSet) acked.clone();
    }

    public String lastError() {
        return lastError;
    }

    @Override
    public void close() {
        try {
            stop(10_000);
        } catch (InterruptedException e) {
            thread.interrupt();
            Thread.currentThread().interrupt();
        }
    }

    /** Numbers in {@code acked} that are not in {@code received}, at most {@code max} of them. */
    public static List<Integer> missing(BitSet acked, BitSet received, int max) {
        List<Integer> out = new ArrayList<>();
        for (int i = acked.nextSetBit(0); i >= 0 && out.size() < max; i = acked.nextSetBit(i + 1)) {
            if (!received.get(i)) {
                out.add(i);
            }
        }
        return out;
    }
}
