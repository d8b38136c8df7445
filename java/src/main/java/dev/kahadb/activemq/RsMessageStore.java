package dev.kahadb.activemq;

import java.io.IOException;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.locks.ReentrantReadWriteLock;

import org.apache.activemq.broker.ConnectionContext;
import org.apache.activemq.command.ActiveMQDestination;
import org.apache.activemq.command.Message;
import org.apache.activemq.command.MessageAck;
import org.apache.activemq.command.MessageId;
import org.apache.activemq.store.AbstractMessageStore;
import org.apache.activemq.store.MessageRecoveryListener;
import org.apache.activemq.util.ByteSequence;

import dev.kahadb.KahaDBException;
import dev.kahadb.Store;

/**
 * The store of one queue (and the base of {@link RsTopicMessageStore}): every operation is one
 * call into the native {@link Store}. Java keeps what is per broker rather than per journal:
 * the ordered announcement of adds ({@link Announcer}), the batch cursor (one position per
 * priority lane), statistics, and the acknowledgements of recovered prepared transactions
 * ({@link RecoveredAcks}).
 */
class RsMessageStore extends AbstractMessageStore {
    /** Body bytes one batch read copies at most (at least one message is always returned). */
    static final int READ_MAX_BYTES = 4 * 1024 * 1024;
    /** Messages one read returns at most when the caller sets no bound. */
    static final int READ_MAX_COUNT = 1000;

    final KahaRsPersistenceAdapter adapter;
    final int kind;
    final String name;
    final Announcer announcer;
    /**
     * Read-held by every change that adjusts statistics incrementally, write-held while they are
     * re-read from the native counts, so no change falls between the two.
     */
    final ReentrantReadWriteLock statsLock = new ReentrantReadWriteLock();
    final RecoveredAcks recoveredAcks = new RecoveredAcks();

    private final Object batchLock = new Object();
    /** Batch cursor: next sequence to read per lane (high, default, low). */
    private final long[] position = new long[3];

    RsMessageStore(KahaRsPersistenceAdapter adapter, ActiveMQDestination destination) throws IOException {
        super(destination);
        this.adapter = adapter;
        this.kind = KahaRsPersistenceAdapter.kind(destination);
        this.name = destination.getPhysicalName();
        long next;
        try {
            next = adapter.store().nextSequence(kind, name);
        } catch (KahaDBException e) {
            throw adapter.failure(e);
        }
        this.announcer = new Announcer(destination.getQualifiedName(), this::getIndexListener, next);
    }

    Store store() throws IOException {
        return adapter.store();
    }

    /** The key recovered acknowledgements of this queue are kept under (KahaDB's). */
    String recoveredKey() {
        return name;
    }

    // ----------------------------------------------------------------------------------------
    // Adds

    @Override
    public void addMessage(ConnectionContext context, Message message) throws IOException {
        String id = message.getMessageId().toProducerKey();
        boolean sync = adapter.isEnableJournalDiskSyncs() && message.isResponseRequired();
        statsLock.readLock().lock();
        try {
            ByteSequence body = adapter.wireFormats().marshal(message);
            announcer.begin();
            boolean reported = false;
            try {
                long seq = store().add(kind, name, id, message.getPriority(), isPrioritizedMessages(),
                        body.getData(), body.getOffset(), body.getLength(), sync);
                adapter.changed();
                if (seq >= 0) {
                    added(body.getLength());
                }
                reported = true;
                announcer.finish(seq, context, message);
            } finally {
                if (!reported) {
                    announcer.abort();
                }
            }
        } catch (KahaDBException e) {
            throw adapter.failure(e);
        } finally {
            statsLock.readLock().unlock();
        }
    }

    /** Statistics of a message stored (caller holds the read lock of {@link #statsLock}). */
    void added(long size) {
        getMessageStoreStatistics().getMessageCount().increment();
        getMessageStoreStatistics().getMessageSize().addSize(size);
    }

    /** Statistics of a message that left the store (caller holds the read lock of {@link #statsLock}). */
    void removed(long size) {
        getMessageStoreStatistics().getMessageCount().decrement();
        if (size > 0) {
            getMessageStoreStatistics().getMessageSize().addSize(-size);
        }
    }

    @Override
    public void updateMessage(Message message) throws IOException {
        String id = message.getMessageId().toProducerKey();
        statsLock.readLock().lock();
        try {
            ByteSequence body = adapter.wireFormats().marshal(message);
            announcer.begin();
            boolean reported = false;
            try {
                long seq = store().update(kind, name, id, message.getPriority(), isPrioritizedMessages(),
                        body.getData(), body.getOffset(), body.getLength(), adapter.isEnableJournalDiskSyncs());
                adapter.changed();
                reported = true;
                if (seq >= 0) {
                    // It was not stored any more and is stored anew: a hole for the announcer,
                    // batches pick it up.
                    added(body.getLength());
                    announcer.finish(List.of(new Announcer.Added(seq, null, null)));
                } else {
                    announcer.finish(List.of());
                }
            } finally {
                if (!reported) {
                    announcer.abort();
                }
            }
        } catch (KahaDBException e) {
            throw adapter.failure(e);
        } finally {
            statsLock.readLock().unlock();
        }
    }

    // ----------------------------------------------------------------------------------------
    // Removes

    @Override
    public void removeMessage(ConnectionContext context, MessageAck ack) throws IOException {
        String id = ack.getLastMessageId().toProducerKey();
        boolean sync = adapter.isEnableJournalDiskSyncs() && ack.isResponseRequired();
        statsLock.readLock().lock();
        try {
            long size = store().remove(kind, name, id, sync);
            adapter.changed();
            if (size >= 0) {
                removed(size);
            }
        } catch (KahaDBException e) {
            throw adapter.failure(e);
        } finally {
            statsLock.readLock().unlock();
        }
    }

    @Override
    public void removeAsyncMessage(ConnectionContext context, MessageAck ack) throws IOException {
        removeMessage(context, ack);
    }

    @Override
    public void removeAllMessages(ConnectionContext context) throws IOException {
        statsLock.writeLock().lock();
        try {
            store().removeDestination(kind, name, true);
            adapter.changed();
            forgetAll();
            announcer.reset(store().nextSequence(kind, name));
            recoverMessageStoreStatistics();
        } catch (KahaDBException e) {
            throw adapter.failure(e);
        } finally {
            statsLock.writeLock().unlock();
        }
    }

    /** Forgets cursors and recovered acknowledgements after the destination was removed. */
    void forgetAll() {
        synchronized (batchLock) {
            position[0] = position[1] = position[2] = 0;
        }
        recoveredAcks.clear();
    }

    // ----------------------------------------------------------------------------------------
    // Reads

    /** One message of a read. */
    record Read(long sequence, int lane, String id, byte[] body) {
    }

    /** A batch of stored messages (of a subscription if {@code sub} is set), in store order. */
    List<Read> read(String sub, long[] from, long limit, int maxCount) throws IOException {
        try {
            byte[] packed = store().read(kind, name, sub, from[0], from[1], from[2], limit,
                    Math.max(1, maxCount), READ_MAX_BYTES);
            Packed p = new Packed(packed);
            int n = p.int32();
            List<Read> out = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                long seq = p.int64();
                int lane = p.int8();
                String id = p.string();
                byte[] body = p.bytes();
                out.add(new Read(seq, lane, id, body));
            }
            return out;
        } catch (KahaDBException e) {
            throw adapter.failure(e);
        }
    }

    /** Whether a read came back short, i.e. there is nothing more to read right now. */
    static boolean exhausted(List<Read> batch, int asked) {
        if (batch.size() >= asked) {
            return false;
        }
        long bytes = 0;
        for (Read r : batch) {
            bytes += r.body().length;
        }
        return bytes < READ_MAX_BYTES;
    }

    Message toMessage(Read r) throws IOException {
        Message m = (Message) adapter.wireFormats().unmarshal(r.body());
        m.getMessageId().setFutureOrSequenceLong(r.sequence());
        return m;
    }

    /**
     * Finds where the messages of recovered prepared acknowledgements are, so that after a
     * rollback they can be handed out again if the batch cursor has passed them (also by a
     * jump of {@link #setBatch}). They are usually near the head: the scan stops once all are found.
     */
    void locateRecovered(String key, String sub, Set<String> ids) throws IOException {
        Set<String> left = new HashSet<>(ids);
        long[] from = new long[3];
        while (!left.isEmpty()) {
            List<Read> batch = read(sub, from, Long.MAX_VALUE, READ_MAX_COUNT);
            for (Read r : batch) {
                from[r.lane()] = r.sequence() + 1;
                if (left.remove(r.id())) {
                    recoveredAcks.skipped(key, r.id(), r.sequence(), r.lane());
                }
            }
            if (batch.isEmpty() || exhausted(batch, READ_MAX_COUNT)) {
                return;
            }
        }
    }

    /** Sequences at or above this are hidden from batches (not yet announced to the queue). */
    long limit() {
        return announcer.limit();
    }

    @Override
    public Message getMessage(MessageId identity) throws IOException {
        try {
            byte[] body = store().getMessage(kind, name, identity.toProducerKey());
            return body == null ? null : (Message) adapter.wireFormats().unmarshal(body);
        } catch (KahaDBException e) {
            throw adapter.failure(e);
        }
    }

    /**
     * Every stored message in store order, independent of the batch cursor (messages of
     * recovered prepared acknowledgements excepted; rolled-back ones are simply there again).
     */
    @Override
    public void recover(MessageRecoveryListener listener) throws Exception {
        String key = recoveredKey();
        long[] from = new long[3];
        while (true) {
            List<Read> batch = read(null, from, Long.MAX_VALUE, READ_MAX_COUNT);
            for (Read r : batch) {
                if (!listener.hasSpace()) {
                    return;
                }
                from[r.lane()] = r.sequence() + 1;
                if (recoveredAcks.isHidden(key, r.id())) {
                    continue;
                }
                listener.recoverMessage(toMessage(r));
            }
            if (batch.isEmpty() || exhausted(batch, READ_MAX_COUNT)) {
                return;
            }
        }
    }

    @Override
    public void recoverNextMessages(int maxReturned, MessageRecoveryListener listener) throws Exception {
        String key = recoveredKey();
        synchronized (batchLock) {
            int count = serveRolledBack(key, position, maxReturned, listener, false);
            if (count >= maxReturned) {
                return;
            }
            long limit = limit();
            while (true) {
                int want = maxReturned - count;
                List<Read> batch = read(null, position, limit, want);
                for (Read r : batch) {
                    position[r.lane()] = r.sequence() + 1;
                    if (recoveredAcks.isHidden(key, r.id())) {
                        recoveredAcks.skipped(key, r.id(), r.sequence(), r.lane());
                        continue;
                    }
                    listener.recoverMessage(toMessage(r));
                    count++;
                    if (count >= maxReturned || !listener.canRecoveryNextMessage()) {
                        return;
                    }
                }
                if (batch.isEmpty() || exhausted(batch, want)) {
                    return;
                }
            }
        }
    }

    /**
     * Hands out again, first, the messages of rolled-back recovered acknowledgements the cursor
     * had already passed (T19). Returns how many were counted.
     */
    int serveRolledBack(String key, long[] cursor, int max, MessageRecoveryListener listener, boolean countAccepted)
            throws Exception {
        List<Map.Entry<String, RecoveredAcks.Position>> back = recoveredAcks.takeRolledBack(key);
        if (back.isEmpty()) {
            return 0;
        }
        int count = 0;
        int i = 0;
        for (; i < back.size() && count < max; i++) {
            Map.Entry<String, RecoveredAcks.Position> e = back.get(i);
            RecoveredAcks.Position p = e.getValue();
            if (p == null || cursor[p.lane()] <= p.sequence()) {
                continue; // not passed yet: the batch reaches it in order
            }
            Message m = getMessage(new MessageId(e.getKey()));
            if (m == null) {
                continue;
            }
            m.getMessageId().setFutureOrSequenceLong(p.sequence());
            boolean accepted = listener.recoverMessage(m);
            if (accepted || !countAccepted) {
                count++;
            }
        }
        recoveredAcks.putBack(key, back.subList(i, back.size()));
        return count;
    }

    @Override
    public void resetBatching() {
        synchronized (batchLock) {
            position[0] = position[1] = position[2] = 0;
        }
    }

    @Override
    public void setBatch(MessageId messageId) throws Exception {
        Object value = messageId.getFutureOrSequenceLong();
        if (!(value instanceof Long)) {
            return;
        }
        long seq = Math.min((Long) value, limit() - 1);
        if (seq < 0) {
            return;
        }
        synchronized (batchLock) {
            position[0] = position[1] = position[2] = seq + 1;
        }
    }

    // ----------------------------------------------------------------------------------------
    // Statistics

    @Override
    protected void recoverMessageStoreStatistics() throws IOException {
        statsLock.writeLock().lock();
        try {
            long[] c = store().counts(kind, name, null);
            getMessageStoreStatistics().reset();
            getMessageStoreStatistics().getMessageCount().setCount(c[0] - recoveredAcks.hiddenCount(recoveredKey()));
            getMessageStoreStatistics().getMessageSize().setTotalSize(c[1]);
        } catch (KahaDBException e) {
            throw adapter.failure(e);
        } finally {
            statsLock.writeLock().unlock();
        }
    }

    @Override
    public void start() throws Exception {
        // A destination re-created after removal starts where the native store says.
        announcer.reset(store().nextSequence(kind, name));
        super.start();
    }

    @Override
    public StoreType getType() {
        return StoreType.KAHADB;
    }

    @Override
    public String toString() {
        return getClass().getSimpleName() + "[" + destination.getQualifiedName() + ", " + announcer.describe() + "]";
    }
}
