package dev.kahadb.activemq;

import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.activemq.broker.ConnectionContext;
import org.apache.activemq.command.ActiveMQDestination;
import org.apache.activemq.command.Message;
import org.apache.activemq.command.MessageAck;
import org.apache.activemq.command.MessageId;
import org.apache.activemq.command.SubscriptionInfo;
import org.apache.activemq.store.MessageRecoveryListener;
import org.apache.activemq.store.MessageStoreSubscriptionStatistics;
import org.apache.activemq.store.TopicMessageStore;
import org.apache.activemq.util.ByteSequence;
import org.apache.activemq.util.SubscriptionKey;

import dev.kahadb.KahaDBException;
import dev.kahadb.Store;

/**
 * The store of one topic: its messages are kept while a durable subscription still needs them
 * (the native store keeps each subscription's pending set). Subscriptions are keyed
 * {@code clientId:subscriptionName}, as KahaDB does; each has its own batch cursor.
 */
final class RsTopicMessageStore extends RsMessageStore implements TopicMessageStore {
    private final MessageStoreSubscriptionStatistics subStats;
    /** Subscriptions the native store holds for this topic (kept in step under {@link #statsLock}). */
    private final Set<String> subscriptions = ConcurrentHashMap.newKeySet();
    /** Per-subscription batch cursors (next sequence per lane); guarded by itself. */
    private final Map<String, long[]> cursors = new HashMap<>();

    RsTopicMessageStore(KahaRsPersistenceAdapter adapter, ActiveMQDestination destination) throws IOException {
        super(adapter, destination);
        this.subStats = new MessageStoreSubscriptionStatistics(adapter.isEnableSubscriptionStatistics());
        // Subscriptions and their statistics are right from the start (start() re-reads them).
        recoverMessageStoreStatistics();
    }

    static String subscriptionKey(String clientId, String subscriptionName) {
        return clientId + ":" + subscriptionName;
    }

    // ----------------------------------------------------------------------------------------
    // Adds and acknowledgements

    @Override
    public void addMessage(ConnectionContext context, Message message) throws IOException {
        String id = message.getMessageId().toProducerKey();
        boolean sync = adapter.isEnableJournalDiskSyncs() && message.isResponseRequired();
        statsLock.readLock().lock();
        try {
            ByteSequence body = adapter.wireFormats().marshal(message);
            long seq = store().add(kind, name, id, message.getPriority(), isPrioritizedMessages(), body.getData(),
                    body.getOffset(), body.getLength(), sync);
            adapter.changed();
            if (seq >= 0) {
                message.getMessageId().setFutureOrSequenceLong(seq);
                added(body.getLength());
            }
        } catch (KahaDBException e) {
            throw adapter.failure(e);
        } finally {
            statsLock.readLock().unlock();
        }
    }

    /** A stored topic message is pending for every subscription the topic has. */
    @Override
    void added(long size) {
        super.added(size);
        for (String sub : subscriptions) {
            subStats.getMessageCount(sub).increment();
            subStats.getMessageSize(sub).addSize(size);
        }
    }

    /**
     * Statistics of an acknowledgement: {@code result} as {@link Store#acknowledge} returns it
     * (caller holds the read lock of {@link #statsLock}).
     */
    void acknowledged(String sub, long result) {
        if (result < 0) {
            return;
        }
        long size = result & ~Store.DELETED_FLAG;
        subStats.getMessageCount(sub).decrement();
        if (size > 0) {
            subStats.getMessageSize(sub).addSize(-size);
        }
        if ((result & Store.DELETED_FLAG) != 0) {
            removed(size);
        }
    }

    @Override
    public void acknowledge(ConnectionContext context, String clientId, String subscriptionName, MessageId messageId,
            MessageAck ack) throws IOException {
        acknowledge(subscriptionKey(clientId, subscriptionName), messageId);
    }

    private void acknowledge(String sub, MessageId messageId) throws IOException {
        statsLock.readLock().lock();
        try {
            // Topic acknowledgements are never synced (as KahaDB, T31).
            long result = store().acknowledge(kind, name, sub, messageId.toProducerKey(), false);
            adapter.changed();
            acknowledged(sub, result);
        } catch (KahaDBException e) {
            throw adapter.failure(e);
        } finally {
            statsLock.readLock().unlock();
        }
    }

    /**
     * The broker acknowledges topic messages per subscription ({@link #acknowledge}); a plain
     * remove only makes sense for an acknowledgement that names its subscription in the
     * consumer id's connection id (as recovered prepared acknowledgements do).
     */
    @Override
    public void removeMessage(ConnectionContext context, MessageAck ack) throws IOException {
        String sub = ack.getConsumerId() != null ? ack.getConsumerId().getConnectionId() : null;
        if (sub != null && subscriptions.contains(sub)) {
            acknowledge(sub, ack.getLastMessageId());
        }
    }

    // ----------------------------------------------------------------------------------------
    // Subscriptions

    @Override
    public void addSubscription(SubscriptionInfo info, boolean retroactive) throws IOException {
        String sub = subscriptionKey(info.getClientId(), info.getSubscriptionName());
        statsLock.writeLock().lock();
        try {
            byte[] bytes = adapter.wireFormats().marshalToArray(info);
            store().subscribe(kind, name, sub, bytes, retroactive, adapter.isEnableJournalDiskSyncs());
            adapter.changed();
            subscriptions.add(sub);
            synchronized (cursors) {
                cursors.remove(sub);
            }
            recoveredAcks.forget(sub);
            refreshSubscription(sub);
        } catch (KahaDBException e) {
            throw adapter.failure(e);
        } finally {
            statsLock.writeLock().unlock();
        }
    }

    @Override
    public void deleteSubscription(String clientId, String subscriptionName) throws IOException {
        String sub = subscriptionKey(clientId, subscriptionName);
        statsLock.writeLock().lock();
        try {
            store().unsubscribe(kind, name, sub, adapter.isEnableJournalDiskSyncs());
            adapter.changed();
            subscriptions.remove(sub);
            synchronized (cursors) {
                cursors.remove(sub);
            }
            recoveredAcks.forget(sub);
            subStats.removeSubscription(sub);
            refreshTopic();
        } catch (KahaDBException e) {
            throw adapter.failure(e);
        } finally {
            statsLock.writeLock().unlock();
        }
    }

    @Override
    public SubscriptionInfo lookupSubscription(String clientId, String subscriptionName) throws IOException {
        String sub = subscriptionKey(clientId, subscriptionName);
        for (Map.Entry<String, SubscriptionInfo> e : subscriptionInfos().entrySet()) {
            if (e.getKey().equals(sub)) {
                return e.getValue();
            }
        }
        return null;
    }

    @Override
    public SubscriptionInfo[] getAllSubscriptions() throws IOException {
        return subscriptionInfos().values().toArray(new SubscriptionInfo[0]);
    }

    private Map<String, SubscriptionInfo> subscriptionInfos() throws IOException {
        try {
            Packed p = new Packed(store().subscriptions(kind, name));
            int n = p.int32();
            Map<String, SubscriptionInfo> out = new LinkedHashMap<>();
            for (int i = 0; i < n; i++) {
                String key = p.string();
                byte[] info = p.bytes();
                out.put(key, (SubscriptionInfo) adapter.wireFormats().unmarshal(info));
            }
            return out;
        } catch (KahaDBException e) {
            throw adapter.failure(e);
        }
    }

    @Override
    public int getMessageCount(String clientId, String subscriberName) throws IOException {
        String sub = subscriptionKey(clientId, subscriberName);
        if (subStats.isEnabled()) {
            return (int) subStats.getMessageCount(sub).getCount();
        }
        try {
            return (int) (store().counts(kind, name, sub)[0] - recoveredAcks.hiddenCount(sub));
        } catch (KahaDBException e) {
            throw adapter.failure(e);
        }
    }

    @Override
    public long getMessageSize(String clientId, String subscriberName) throws IOException {
        String sub = subscriptionKey(clientId, subscriberName);
        if (subStats.isEnabled()) {
            return subStats.getMessageSize(sub).getTotalSize();
        }
        try {
            return store().counts(kind, name, sub)[1];
        } catch (KahaDBException e) {
            throw adapter.failure(e);
        }
    }

    @Override
    public MessageStoreSubscriptionStatistics getMessageStoreSubStatistics() {
        return subStats;
    }

    // ----------------------------------------------------------------------------------------
    // Reads

    /** Topic messages are read by subscription; the topic's own reads have no announcer limit. */
    @Override
    long limit() {
        return Long.MAX_VALUE;
    }

    /** Subscriptions have their own cursors; the broker's shared-cursor hint means nothing here. */
    @Override
    public void setBatch(MessageId messageId) {
    }

    @Override
    public void recoverSubscription(String clientId, String subscriptionName, MessageRecoveryListener listener)
            throws Exception {
        String sub = subscriptionKey(clientId, subscriptionName);
        long[] from = new long[3];
        while (true) {
            List<Read> batch = read(sub, from, Long.MAX_VALUE, READ_MAX_COUNT);
            for (Read r : batch) {
                from[r.lane()] = r.sequence() + 1;
                if (recoveredAcks.isHidden(sub, r.id())) {
                    recoveredAcks.skipped(sub, r.id(), r.sequence(), r.lane());
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
    public void recoverNextMessages(String clientId, String subscriptionName, int maxReturned,
            MessageRecoveryListener listener) throws Exception {
        String sub = subscriptionKey(clientId, subscriptionName);
        if (!subscriptions.contains(sub)) {
            return;
        }
        long[] cursor;
        synchronized (cursors) {
            cursor = cursors.computeIfAbsent(sub, k -> new long[3]);
        }
        synchronized (cursor) {
            int count = serveRolledBack(sub, cursor, maxReturned, listener, true);
            if (count >= maxReturned) {
                return;
            }
            while (true) {
                int want = Math.min(READ_MAX_COUNT, Math.max(1, maxReturned - count));
                List<Read> batch = read(sub, cursor, Long.MAX_VALUE, want);
                for (Read r : batch) {
                    cursor[r.lane()] = r.sequence() + 1;
                    if (recoveredAcks.isHidden(sub, r.id())) {
                        recoveredAcks.skipped(sub, r.id(), r.sequence(), r.lane());
                        continue;
                    }
                    if (listener.recoverMessage(toMessage(r))) {
                        count++;
                    }
                    if (count >= maxReturned || !listener.hasSpace()) {
                        return;
                    }
                }
                if (batch.isEmpty() || exhausted(batch, want)) {
                    return;
                }
            }
        }
    }

    @Override
    public void resetBatching(String clientId, String subscriptionName) {
        synchronized (cursors) {
            cursors.remove(subscriptionKey(clientId, subscriptionName));
        }
    }

    @Override
    public Map<SubscriptionKey, List<Message>> recoverExpired(Set<SubscriptionKey> subs, int maxBrowse,
            MessageRecoveryListener listener) throws Exception {
        Map<SubscriptionKey, List<Message>> expired = new HashMap<>();
        Map<String, SubscriptionKey> known = new HashMap<>();
        for (SubscriptionKey k : subs) {
            String key = subscriptionKey(k.getClientId(), k.getSubscriptionName());
            if (subscriptions.contains(key)) {
                known.put(key, k);
            }
        }
        long[] from = new long[3];
        int browsed = 0;
        while (browsed < maxBrowse) {
            int want = Math.min(READ_MAX_COUNT, maxBrowse - browsed);
            List<Read> batch = read(null, from, Long.MAX_VALUE, want);
            for (Read r : batch) {
                if (browsed >= maxBrowse || !listener.hasSpace()) {
                    return expired;
                }
                browsed++;
                from[r.lane()] = r.sequence() + 1;
                Message m = toMessage(r);
                if (!m.isExpired()) {
                    continue;
                }
                boolean passed = false;
                for (Map.Entry<String, SubscriptionKey> e : known.entrySet()) {
                    if (pendingFor(e.getKey(), r)) {
                        expired.computeIfAbsent(e.getValue(), x -> new ArrayList<>()).add(m);
                        if (!passed) {
                            listener.recoverMessage(m);
                            passed = true;
                        }
                    }
                }
            }
            if (batch.isEmpty() || exhausted(batch, want)) {
                break;
            }
        }
        return expired;
    }

    /** Whether the message just read is still pending for the subscription. */
    private boolean pendingFor(String sub, Read r) throws IOException {
        if (recoveredAcks.isHidden(sub, r.id())) {
            return false;
        }
        long s = r.sequence();
        try {
            Packed p = new Packed(store().read(kind, name, sub, s, s, s, s + 1, 1, 1));
            return p.int32() > 0;
        } catch (KahaDBException e) {
            throw adapter.failure(e);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Statistics

    /** Re-reads one subscription's statistics (caller holds the write lock of {@link #statsLock}). */
    private void refreshSubscription(String sub) throws IOException {
        long[] c = store().counts(kind, name, sub);
        subStats.removeSubscription(sub);
        subStats.getMessageCount(sub).add(c[0] - recoveredAcks.hiddenCount(sub));
        subStats.getMessageSize(sub).addSize(c[1]);
    }

    /** Re-reads the topic's statistics (caller holds the write lock of {@link #statsLock}). */
    private void refreshTopic() throws IOException {
        long[] c = store().counts(kind, name, null);
        getMessageStoreStatistics().reset();
        getMessageStoreStatistics().getMessageCount().setCount(c[0]);
        getMessageStoreStatistics().getMessageSize().setTotalSize(c[1]);
    }

    @Override
    protected void recoverMessageStoreStatistics() throws IOException {
        statsLock.writeLock().lock();
        try {
            refreshTopic();
            subStats.reset();
            subscriptions.clear();
            for (SubscriptionInfo info : getAllSubscriptions()) {
                String sub = subscriptionKey(info.getClientId(), info.getSubscriptionName());
                subscriptions.add(sub);
                refreshSubscription(sub);
            }
        } catch (KahaDBException e) {
            throw adapter.failure(e);
        } finally {
            statsLock.writeLock().unlock();
        }
    }

    /** Re-reads every statistic (after the outcome of a recovered prepared transaction). */
    void refreshAll() throws IOException {
        recoverMessageStoreStatistics();
    }

    @Override
    void forgetAll() {
        super.forgetAll();
        synchronized (cursors) {
            cursors.clear();
        }
    }
}
