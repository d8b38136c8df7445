package dev.kahadb.activemq;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.function.Supplier;

import org.apache.activemq.broker.ConnectionContext;
import org.apache.activemq.command.Message;
import org.apache.activemq.store.IndexListener;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Hands a queue's stored messages to the broker's {@link IndexListener} strictly in sequence
 * order (STORE.md 6.8, traps T14, T16, T17).
 *
 * <p>The native store assigns a queue's sequences in journal order, but the threads that made
 * the adds come back in any order. Each of them reports its result here; whoever completes the
 * run starting at {@code next} announces it: sets the sequence on the message and calls
 * {@code onAdd}. Sequences not reported by an add of this store's broker path (an update that
 * stored a message anew, the commit of a recovered prepared transaction) are reported as holes:
 * they only move {@code next} on.
 *
 * <p>Batch reads see only sequences below {@link #limit()}: below {@code next}, and below the
 * oldest announced message the queue has not yet put in its cursor. So a message is never both
 * read from the store and added to the cursor by the queue.
 *
 * <p>Every native call that can assign a sequence in this destination is bracketed by
 * {@link #begin()} and one of the {@code finish} methods; when no call is in flight and a gap
 * remains, the gap is one the store will never fill (a failed call), and it is skipped.
 */
final class Announcer {
    private static final Logger LOG = LoggerFactory.getLogger(Announcer.class);

    /** A stored message waiting for its turn; a null message is a hole. */
    static final class Added {
        final long sequence;
        final ConnectionContext context;
        final Message message;

        Added(long sequence, ConnectionContext context, Message message) {
            this.sequence = sequence;
            this.context = context;
            this.message = message;
        }
    }

    private final Supplier<IndexListener> listener;
    private final String name;
    private long next;
    private int inFlight;
    private final TreeMap<Long, Added> waiting = new TreeMap<>();
    /** Announced, not yet in the queue's cursor (onCompletion not run). */
    private final TreeSet<Long> pending = new TreeSet<>();

    Announcer(String name, Supplier<IndexListener> listener, long next) {
        this.name = name;
        this.listener = listener;
        this.next = next;
    }

    /** Starts over at {@code nextSequence} (the destination was removed or re-read). */
    synchronized void reset(long nextSequence) {
        if (inFlight > 0 || !waiting.isEmpty()) {
            LOG.warn("{}: sequence announcer reset with {} call(s) in flight and {} waiting", name, inFlight,
                    waiting.size());
        }
        waiting.clear();
        pending.clear();
        next = nextSequence;
    }

    /** A native call that may assign sequences here is about to start. */
    synchronized void begin() {
        inFlight++;
    }

    /** The call started by {@link #begin()} failed: it assigned nothing we will hear of. */
    synchronized void abort() {
        inFlight--;
        drain();
    }

    /** The call started by {@link #begin()} stored one message (or found a duplicate: -1). */
    synchronized void finish(long sequence, ConnectionContext context, Message message) {
        inFlight--;
        offer(sequence, context, message);
        drain();
    }

    /** The call started by {@link #begin()} stored these (a transaction's adds to this queue). */
    synchronized void finish(List<Added> added) {
        inFlight--;
        for (Added a : added) {
            offer(a.sequence, a.context, a.message);
        }
        drain();
    }

    /** Sequences below this may be read by batches. */
    synchronized long limit() {
        return pending.isEmpty() ? next : Math.min(next, pending.first());
    }

    private void offer(long sequence, ConnectionContext context, Message message) {
        if (sequence < 0) {
            // A duplicate: nothing stored, nothing to order. The queue drops it (T14).
            if (message != null) {
                message.getMessageId().setFutureOrSequenceLong(-1L);
                IndexListener l = listener.get();
                if (l != null) {
                    l.onAdd(new IndexListener.MessageContext(context, message, null));
                }
            }
            return;
        }
        if (sequence < next) {
            // Cannot happen while every sequence is reported once; announce rather than lose it.
            LOG.warn("{}: sequence {} reported after {} was announced", name, sequence, next);
            announce(new Added(sequence, context, message));
            return;
        }
        waiting.put(sequence, new Added(sequence, context, message));
    }

    private void drain() {
        while (true) {
            Map.Entry<Long, Added> first = waiting.firstEntry();
            if (first == null) {
                return;
            }
            if (first.getKey() != next) {
                if (inFlight > 0) {
                    return;
                }
                LOG.warn("{}: sequences {}..{} were never reported; skipping them", name, next, first.getKey() - 1);
                next = first.getKey();
            }
            waiting.pollFirstEntry();
            announce(first.getValue());
            next++;
        }
    }

    private void announce(Added a) {
        if (a.message == null) {
            return;
        }
        a.message.getMessageId().setFutureOrSequenceLong(a.sequence);
        IndexListener l = listener.get();
        if (l != null) {
            final long seq = a.sequence;
            pending.add(seq);
            l.onAdd(new IndexListener.MessageContext(a.context, a.message, () -> completed(seq)));
        }
    }

    private synchronized void completed(long sequence) {
        pending.remove(sequence);
    }

    /** For diagnostics. */
    synchronized String describe() {
        List<Long> w = new ArrayList<>(waiting.keySet());
        return "next=" + next + ", inFlight=" + inFlight + ", waiting=" + w + ", pending=" + pending;
    }
}
