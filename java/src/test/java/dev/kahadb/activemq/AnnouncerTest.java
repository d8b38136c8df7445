package dev.kahadb.activemq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.activemq.command.ActiveMQTextMessage;
import org.apache.activemq.command.Message;
import org.apache.activemq.command.MessageId;
import org.apache.activemq.store.IndexListener;
import org.junit.jupiter.api.Test;

/** The ordered announcement of queue adds (traps T14, T16, T17), without a broker. */
class AnnouncerTest {

    static Message message(long i) {
        Message m = new ActiveMQTextMessage();
        m.setMessageId(new MessageId("ID:test-1:1:1:1", i));
        return m;
    }

    /** Records onAdd calls; completes (puts in the cursor) on demand. */
    static final class Recorder implements IndexListener {
        final List<MessageContext> added = Collections.synchronizedList(new ArrayList<>());

        @Override
        public void onAdd(MessageContext ctx) {
            added.add(ctx);
        }

        List<Long> sequences() {
            List<Long> out = new ArrayList<>();
            synchronized (added) {
                for (MessageContext c : added) {
                    out.add((Long) c.message.getMessageId().getFutureOrSequenceLong());
                }
            }
            return out;
        }
    }

    @Test
    void announcesInSequenceOrderAndHidesUnannouncedFromBatches() {
        Recorder r = new Recorder();
        Announcer a = new Announcer("q", () -> r, 10);
        assertEquals(10, a.limit());
        a.begin();
        a.begin();
        a.begin();
        Message m11 = message(11);
        a.finish(11, null, m11); // arrives first, waits for 10
        assertEquals(List.of(), r.sequences());
        assertNull(m11.getMessageId().getFutureOrSequenceLong());
        assertEquals(10, a.limit());
        Message dup = message(99);
        a.finish(-1, null, dup); // a duplicate: announced at once as -1, takes no sequence
        assertEquals(List.of(-1L), r.sequences());
        a.finish(10, null, message(10));
        assertEquals(List.of(-1L, 10L, 11L), r.sequences());
        // Announced, not yet in the queue's cursor: batches stop below the oldest.
        assertEquals(10, a.limit());
        assertNull(r.added.get(0).onCompletion, "duplicates are not tracked");
        r.added.get(1).onCompletion.run();
        assertEquals(11, a.limit());
        r.added.get(2).onCompletion.run();
        assertEquals(12, a.limit());
    }

    @Test
    void holesMoveOnAndFailedCallsDoNotBlock() {
        Recorder r = new Recorder();
        Announcer a = new Announcer("q", () -> r, 0);
        a.begin();
        a.begin();
        a.finish(1, null, message(1));
        a.finish(List.of(new Announcer.Added(0, null, null))); // a hole (update that stored anew)
        assertEquals(List.of(1L), r.sequences());
        // A call that consumed sequence 2 failed and reported nothing; 3 arrives later.
        a.begin();
        a.begin();
        a.finish(3, null, message(3));
        assertEquals(List.of(1L), r.sequences());
        a.abort();
        assertEquals(List.of(1L, 3L), r.sequences());
    }

    @Test
    void concurrentReportersAnnounceEverySequenceOnceInOrder() throws Exception {
        Recorder r = new Recorder();
        Announcer a = new Announcer("q", () -> r, 0);
        AtomicLong next = new AtomicLong();
        int threads = 8;
        int each = 5000;
        CountDownLatch go = new CountDownLatch(1);
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            final Random rnd = new Random(t);
            Thread th = new Thread(() -> {
                try {
                    go.await();
                    for (int i = 0; i < each; i++) {
                        a.begin();
                        long seq = next.getAndIncrement(); // the store assigns in order...
                        if (rnd.nextInt(8) == 0) {
                            Thread.yield(); // ...threads come back in any order
                        }
                        a.finish(seq, null, message(seq));
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            });
            th.start();
            ts.add(th);
        }
        go.countDown();
        for (Thread th : ts) {
            th.join();
        }
        List<Long> seqs = r.sequences();
        assertEquals(threads * each, seqs.size());
        for (int i = 0; i < seqs.size(); i++) {
            assertEquals(i, seqs.get(i).longValue());
        }
        for (IndexListener.MessageContext c : r.added) {
            c.onCompletion.run();
        }
        assertEquals(threads * each, a.limit());
        assertTrue(a.describe().contains("waiting=[]"));
    }
}
