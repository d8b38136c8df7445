package dev.kahadb.activemq;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;

import org.apache.activemq.broker.ConnectionContext;
import org.apache.activemq.command.ActiveMQDestination;
import org.apache.activemq.command.ConnectionId;
import org.apache.activemq.command.ConsumerId;
import org.apache.activemq.command.LocalTransactionId;
import org.apache.activemq.command.Message;
import org.apache.activemq.command.MessageAck;
import org.apache.activemq.command.MessageId;
import org.apache.activemq.command.TransactionId;
import org.apache.activemq.command.XATransactionId;
import org.apache.activemq.store.AbstractMessageStore;
import org.apache.activemq.store.ListenableFuture;
import org.apache.activemq.store.MessageStore;
import org.apache.activemq.store.ProxyMessageStore;
import org.apache.activemq.store.ProxyTopicMessageStore;
import org.apache.activemq.store.TopicMessageStore;
import org.apache.activemq.store.TransactionRecoveryListener;
import org.apache.activemq.store.TransactionStore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import dev.kahadb.KahaDBException;
import dev.kahadb.Store;
import dev.kahadb.TxOps;

/**
 * Transactions (STORE.md 3.4, 6.7): transactional adds and acknowledgements are buffered here,
 * per transaction, and written at the outcome in one native call (operations and commit
 * contiguous), or at XA prepare (operations and prepare, synced). Nothing is written for a
 * transaction that rolls back before it was prepared.
 *
 * <p>Queue adds committed here are announced to the queue through the store's
 * {@link Announcer}, in sequence order, before {@code postCommit} runs (trap T18).
 */
final class RsTransactionStore implements TransactionStore {
    private static final Logger LOG = LoggerFactory.getLogger(RsTransactionStore.class);

    /** One buffered operation. */
    static final class Op {
        final RsMessageStore store;
        final boolean add;
        final String messageId;
        /** Add: the message; remove: null. */
        final Message message;
        final ConnectionContext context;
        final byte[] body;
        final int priority;
        final boolean prioritized;
        /** Remove of a topic message: the subscription key. */
        final String subscription;
        /** Remove, XA only: the marshalled acknowledgement. */
        final byte[] ack;

        private Op(RsMessageStore store, boolean add, String messageId, Message message, ConnectionContext context,
                byte[] body, int priority, boolean prioritized, String subscription, byte[] ack) {
            this.store = store;
            this.add = add;
            this.messageId = messageId;
            this.message = message;
            this.context = context;
            this.body = body;
            this.priority = priority;
            this.prioritized = prioritized;
            this.subscription = subscription;
            this.ack = ack;
        }

        static Op add(RsMessageStore store, Message message, ConnectionContext context, byte[] body, int priority,
                boolean prioritized) {
            return new Op(store, true, message.getMessageId().toProducerKey(), message, context, body, priority,
                    prioritized, null, null);
        }

        static Op remove(RsMessageStore store, String messageId, String subscription, byte[] ack) {
            return new Op(store, false, messageId, null, null, null, 0, false, subscription, ack);
        }

        /** The key recovered acknowledgements of this op are kept under. */
        String recoveredKey() {
            return subscription != null ? subscription : store.recoveredKey();
        }
    }

    /** The buffered work of one transaction. */
    static final class Tx {
        final List<Op> ops = new ArrayList<>();
        /** Recovered at start-up from a prepared transaction (its adds are not announced). */
        final boolean recovered;

        Tx(boolean recovered) {
            this.recovered = recovered;
        }

        synchronized void add(Op op) {
            ops.add(op);
        }

        synchronized List<Op> snapshot() {
            return new ArrayList<>(ops);
        }
    }

    private final KahaRsPersistenceAdapter adapter;
    private final ConcurrentHashMap<TransactionId, Tx> inflight = new ConcurrentHashMap<>();
    private final Map<TransactionId, Tx> prepared = new ConcurrentHashMap<>();

    RsTransactionStore(KahaRsPersistenceAdapter adapter) {
        this.adapter = adapter;
    }

    void clear() {
        inflight.clear();
        prepared.clear();
    }

    // ----------------------------------------------------------------------------------------
    // Proxies: divert transactional work into the buffers

    MessageStore proxy(RsMessageStore store) {
        return new ProxyMessageStore(store) {
            @Override
            public void addMessage(ConnectionContext context, Message message) throws IOException {
                RsTransactionStore.this.addMessage(context, store, message);
            }

            @Override
            public void addMessage(ConnectionContext context, Message message, boolean canOptimizeHint)
                    throws IOException {
                RsTransactionStore.this.addMessage(context, store, message);
            }

            @Override
            public ListenableFuture<Object> asyncAddQueueMessage(ConnectionContext context, Message message)
                    throws IOException {
                RsTransactionStore.this.addMessage(context, store, message);
                return AbstractMessageStore.FUTURE;
            }

            @Override
            public ListenableFuture<Object> asyncAddQueueMessage(ConnectionContext context, Message message,
                    boolean canOptimizeHint) throws IOException {
                RsTransactionStore.this.addMessage(context, store, message);
                return AbstractMessageStore.FUTURE;
            }

            @Override
            public void removeMessage(ConnectionContext context, MessageAck ack) throws IOException {
                RsTransactionStore.this.removeMessage(context, store, ack);
            }

            @Override
            public void removeAsyncMessage(ConnectionContext context, MessageAck ack) throws IOException {
                RsTransactionStore.this.removeMessage(context, store, ack);
            }
        };
    }

    TopicMessageStore proxy(RsTopicMessageStore store) {
        return new ProxyTopicMessageStore(store) {
            @Override
            public void addMessage(ConnectionContext context, Message message) throws IOException {
                RsTransactionStore.this.addMessage(context, store, message);
            }

            @Override
            public void addMessage(ConnectionContext context, Message message, boolean canOptimizeHint)
                    throws IOException {
                RsTransactionStore.this.addMessage(context, store, message);
            }

            @Override
            public ListenableFuture<Object> asyncAddTopicMessage(ConnectionContext context, Message message)
                    throws IOException {
                RsTransactionStore.this.addMessage(context, store, message);
                return AbstractMessageStore.FUTURE;
            }

            @Override
            public ListenableFuture<Object> asyncAddTopicMessage(ConnectionContext context, Message message,
                    boolean canOptimizeHint) throws IOException {
                RsTransactionStore.this.addMessage(context, store, message);
                return AbstractMessageStore.FUTURE;
            }

            @Override
            public void removeMessage(ConnectionContext context, MessageAck ack) throws IOException {
                RsTransactionStore.this.removeMessage(context, store, ack);
            }

            @Override
            public void removeAsyncMessage(ConnectionContext context, MessageAck ack) throws IOException {
                RsTransactionStore.this.removeMessage(context, store, ack);
            }

            @Override
            public void acknowledge(ConnectionContext context, String clientId, String subscriptionName,
                    MessageId messageId, MessageAck ack) throws IOException {
                if (ack != null && ack.isInTransaction()) {
                    String sub = RsTopicMessageStore.subscriptionKey(clientId, subscriptionName);
                    TransactionId txid = ack.getTransactionId();
                    byte[] ackBytes = txid.isXATransaction() ? adapter.wireFormats().marshalToArray(ack) : null;
                    tx(txid).add(Op.remove(store, messageId.toProducerKey(), sub, ackBytes));
                } else {
                    store.acknowledge(context, clientId, subscriptionName, messageId, ack);
                }
            }
        };
    }

    private Tx tx(TransactionId txid) {
        return inflight.computeIfAbsent(txid, k -> new Tx(false));
    }

    void addMessage(ConnectionContext context, RsMessageStore store, Message message) throws IOException {
        TransactionId txid = message.getTransactionId();
        if (txid == null) {
            store.addMessage(context, message);
            return;
        }
        byte[] body = adapter.wireFormats().marshalToArray(message);
        tx(txid).add(Op.add(store, message, context, body, message.getPriority(), store.isPrioritizedMessages()));
    }

    void removeMessage(ConnectionContext context, RsMessageStore store, MessageAck ack) throws IOException {
        if (!ack.isInTransaction()) {
            store.removeMessage(context, ack);
            return;
        }
        TransactionId txid = ack.getTransactionId();
        byte[] ackBytes = txid.isXATransaction() ? adapter.wireFormats().marshalToArray(ack) : null;
        tx(txid).add(Op.remove(store, ack.getLastMessageId().toProducerKey(), null, ackBytes));
    }

    // ----------------------------------------------------------------------------------------
    // Outcomes

    static byte[] txKey(TransactionId txid) {
        if (txid.isXATransaction()) {
            XATransactionId xa = (XATransactionId) txid;
            return TxOps.xaTx(xa.getFormatId(), xa.getGlobalTransactionId(), xa.getBranchQualifier());
        }
        LocalTransactionId local = (LocalTransactionId) txid;
        return TxOps.localTx(local.getConnectionId().getValue(), local.getValue());
    }

    private static TxOps encode(List<Op> ops) {
        TxOps out = new TxOps();
        for (Op op : ops) {
            if (op.add) {
                out.add(op.store.kind, op.store.name, op.messageId, op.priority, op.prioritized, op.body);
            } else {
                out.remove(op.store.kind, op.store.name, op.messageId, op.subscription, op.ack);
            }
        }
        return out;
    }

    @Override
    public void prepare(TransactionId txid) throws IOException {
        Tx tx = inflight.remove(txid);
        if (tx == null) {
            tx = new Tx(false);
        }
        List<Op> ops = tx.snapshot();
        if (!ops.isEmpty()) {
            try {
                adapter.store().prepare(txKey(txid), encode(ops));
                adapter.changed();
            } catch (KahaDBException e) {
                throw adapter.failure(e);
            }
        }
        prepared.put(txid, tx);
    }

    @Override
    public void commit(TransactionId txid, boolean wasPrepared, Runnable preCommit, Runnable postCommit)
            throws IOException {
        if (txid == null) {
            LOG.error("Null transaction passed on commit");
            return;
        }
        if (preCommit != null) {
            preCommit.run();
        }
        Tx tx = wasPrepared ? prepared.remove(txid) : inflight.remove(txid);
        List<Op> ops = tx == null ? List.of() : tx.snapshot();
        boolean recovered = tx != null && tx.recovered;
        // postCommit runs whenever the outcome is on record (also for an empty transaction, and
        // when our own bookkeeping after the write fails); a failed write throws without it, and
        // the broker rolls back.
        boolean written = false;
        try {
            if (!wasPrepared && ops.isEmpty()) {
                written = true;
                return;
            }
            // Queue stores whose sequences this commit may assign, and every store it touches,
            // in one order (locks of several stores are always taken in this order).
            TreeMap<String, RsMessageStore> touched = new TreeMap<>();
            for (Op op : ops) {
                touched.put(KahaRsPersistenceAdapter.key(op.store.kind, op.store.name), op.store);
            }
            // (Recovered adds are announced as holes: they only move the announcer on.)
            List<RsMessageStore> announcing = new ArrayList<>();
            for (Op op : ops) {
                if (op.add && !(op.store instanceof RsTopicMessageStore) && !announcing.contains(op.store)) {
                    announcing.add(op.store);
                }
            }
            List<RsMessageStore> locked = new ArrayList<>(touched.values());
            for (RsMessageStore s : locked) {
                s.statsLock.readLock().lock();
            }
            try {
                for (RsMessageStore s : announcing) {
                    s.announcer.begin();
                }
                Map<RsMessageStore, List<Announcer.Added>> announce = new LinkedHashMap<>();
                for (RsMessageStore s : announcing) {
                    announce.put(s, new ArrayList<>());
                }
                try {
                    long[] results;
                    try {
                        boolean sync = adapter.isEnableJournalDiskSyncs();
                        results = wasPrepared ? adapter.store().commitPrepared(txKey(txid), sync)
                                : adapter.store().commit(txKey(txid), encode(ops), sync);
                        if (results == null) {
                            results = new long[0]; // not prepared in the store (no persistent work)
                        }
                        adapter.changed();
                    } catch (KahaDBException e) {
                        throw adapter.failure(e);
                    }
                    written = true;
                    if (results.length != ops.size()) {
                        if (!ops.isEmpty()) {
                            LOG.warn("Commit of {}: {} results for {} operations", txid, results.length, ops.size());
                        }
                        return;
                    }
                    // Guards against an operation repeated in one transaction (the same message
                    // added or acknowledged twice): only the first may count.
                    Set<String> seen = new HashSet<>();
                    for (int i = 0; i < ops.size(); i++) {
                        Op op = ops.get(i);
                        long r = results[i];
                        String once = (op.add ? "a:" + r : "r:" + op.subscription + ":" + op.messageId) + "@"
                                + KahaRsPersistenceAdapter.key(op.store.kind, op.store.name);
                        if (r >= 0 && !seen.add(once)) {
                            LOG.warn("Commit of {}: {} of {} repeated in the transaction", txid,
                                    op.add ? "add" : "acknowledgement", op.messageId);
                            r = -1;
                        }
                        if (op.add) {
                            if (r >= 0) {
                                op.store.added(op.body.length);
                            }
                            List<Announcer.Added> list = announce.get(op.store);
                            if (list != null) {
                                list.add(new Announcer.Added(r, op.context, recovered ? null : op.message));
                            }
                        } else if (op.subscription != null && op.store instanceof RsTopicMessageStore) {
                            ((RsTopicMessageStore) op.store).acknowledged(op.subscription, r);
                        } else if (r >= 0) {
                            // A queue remove: the size (with the deleted flag, as acknowledgements).
                            op.store.removed(r & ~Store.DELETED_FLAG);
                        }
                    }
                } finally {
                    for (RsMessageStore s : announcing) {
                        List<Announcer.Added> list = announce.get(s);
                        if (written) {
                            s.announcer.finish(list);
                        } else {
                            s.announcer.abort();
                        }
                    }
                }
            } finally {
                for (int i = locked.size() - 1; i >= 0; i--) {
                    locked.get(i).statsLock.readLock().unlock();
                }
            }
            if (recovered) {
                release(ops, false);
            }
        } finally {
            if (written && postCommit != null) {
                postCommit.run();
            }
        }
    }

    @Override
    public void rollback(TransactionId txid) throws IOException {
        inflight.remove(txid);
        Tx tx = prepared.remove(txid);
        if (tx == null) {
            return;
        }
        List<Op> ops = tx.snapshot();
        if (!ops.isEmpty()) {
            try {
                adapter.store().rollbackPrepared(txKey(txid), adapter.isEnableJournalDiskSyncs());
                adapter.changed();
            } catch (KahaDBException e) {
                throw adapter.failure(e);
            }
        }
        if (tx.recovered) {
            release(ops, true);
        }
    }

    /** The outcome of a recovered prepared transaction is on record: show its acked messages again or not. */
    private void release(List<Op> ops, boolean rollback) throws IOException {
        Map<RsMessageStore, Boolean> stores = new LinkedHashMap<>();
        for (Op op : ops) {
            if (!op.add) {
                op.store.recoveredAcks.release(op.recoveredKey(), op.messageId, rollback);
            }
            stores.put(op.store, Boolean.TRUE);
        }
        for (RsMessageStore s : stores.keySet()) {
            s.recoverMessageStoreStatistics();
        }
    }

    @Override
    public void start() throws Exception {
    }

    @Override
    public void stop() throws Exception {
    }

    // ----------------------------------------------------------------------------------------
    // Recovery

    @Override
    public synchronized void recover(TransactionRecoveryListener listener) throws IOException {
        inflight.clear();
        byte[] packed;
        try {
            packed = adapter.store().preparedTransactions();
        } catch (KahaDBException e) {
            throw adapter.failure(e);
        }
        Packed p = new Packed(packed);
        int n = p.int32();
        List<Map.Entry<XATransactionId, Tx>> recovered = new ArrayList<>();
        for (int t = 0; t < n; t++) {
            TransactionId txid = readTxId(p);
            Tx tx = new Tx(true);
            int count = p.int32();
            for (int i = 0; i < count; i++) {
                int opKind = p.int8();
                int kind = p.int8();
                String dest = p.string();
                String messageId = p.string();
                RsMessageStore store = adapter.rawStore(kind, dest);
                if (opKind == TxOps.ADD) {
                    int priority = p.int32();
                    boolean prioritized = p.int8() != 0;
                    byte[] body = p.bytes();
                    Message m = (Message) adapter.wireFormats().unmarshal(body);
                    tx.add(Op.add(store, m, null, body, priority, prioritized));
                } else {
                    byte[] subBytes = p.bytes();
                    String sub = subBytes == null ? null
                            : new String(subBytes, StandardCharsets.UTF_8);
                    byte[] ack = p.bytes();
                    tx.add(Op.remove(store, messageId, sub, ack));
                }
            }
            if (!(txid instanceof XATransactionId)) {
                LOG.warn("Ignoring a prepared local transaction {}", txid);
                continue;
            }
            recovered.add(Map.entry((XATransactionId) txid, tx));
        }
        recovered.sort(Comparator.comparing(e -> e.getKey().getTransactionKey()));
        for (Map.Entry<XATransactionId, Tx> e : recovered) {
            XATransactionId xid = e.getKey();
            Tx tx = e.getValue();
            List<Message> messages = new ArrayList<>();
            ArrayList<MessageAck> acks = new ArrayList<>();
            for (Op op : tx.snapshot()) {
                if (op.add) {
                    messages.add(op.message);
                    continue;
                }
                if (op.ack == null || op.ack.length == 0) {
                    LOG.warn("Prepared transaction {}: acknowledgement of {} without its bytes", xid, op.messageId);
                    continue;
                }
                MessageAck ack = (MessageAck) adapter.wireFormats().unmarshal(op.ack);
                // Lets the broker trace a topic acknowledgement back to its durable subscription.
                ConsumerId subKey = new ConsumerId();
                subKey.setConnectionId(op.subscription);
                ack.setConsumerId(subKey);
                acks.add(ack);
                op.store.recoveredAcks.hide(op.recoveredKey(), op.messageId);
            }
            prepared.put(xid, tx);
            xid.setPreparedAcks(acks);
            listener.recover(xid, messages.toArray(new Message[0]), acks.toArray(new MessageAck[0]));
        }
        // Where the hidden messages are, and statistics that exclude them.
        Map<RsMessageStore, Map<String, Set<String>>> hiddenByStore = new LinkedHashMap<>();
        for (Map.Entry<XATransactionId, Tx> e : recovered) {
            for (Op op : e.getValue().snapshot()) {
                Map<String, Set<String>> keys = hiddenByStore.computeIfAbsent(op.store, k -> new LinkedHashMap<>());
                if (!op.add) {
                    keys.computeIfAbsent(op.recoveredKey(), k -> new HashSet<>()).add(op.messageId);
                }
            }
        }
        for (Map.Entry<RsMessageStore, Map<String, Set<String>>> e : hiddenByStore.entrySet()) {
            RsMessageStore s = e.getKey();
            for (Map.Entry<String, Set<String>> k : e.getValue().entrySet()) {
                String sub = s instanceof RsTopicMessageStore ? k.getKey() : null;
                s.locateRecovered(k.getKey(), sub, k.getValue());
            }
            s.recoverMessageStoreStatistics();
        }
    }

    /** Destinations named by prepared transactions (the broker re-creates them at start-up). */
    List<ActiveMQDestination> preparedDestinations() {
        List<ActiveMQDestination> out = new ArrayList<>();
        for (Tx tx : prepared.values()) {
            for (Op op : tx.snapshot()) {
                out.add(op.store.getDestination());
            }
        }
        return out;
    }

    private static TransactionId readTxId(Packed p) {
        int type = p.int8();
        if (type == 1) {
            XATransactionId xid = new XATransactionId();
            xid.setFormatId(p.int32());
            xid.setGlobalTransactionId(p.bytes());
            xid.setBranchQualifier(p.bytes());
            return xid;
        }
        String connection = p.string();
        long value = p.int64();
        return new LocalTransactionId(new ConnectionId(connection), value);
    }
}
