package dev.kahadb;

import java.io.IOException;
import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;

/**
 * A message store: KahaDB's journal commands in a KahaDB-compatible journal, with the index
 * (destinations, messages in order, durable subscriptions, transactions) kept by the native
 * library. This is the low-level binding the ActiveMQ adapter ({@code dev.kahadb.activemq})
 * is built on; every method is one native call.
 *
 * <p>Destinations are named by a type ({@link #QUEUE}, {@link #TOPIC}, {@link #TEMP_QUEUE},
 * {@link #TEMP_TOPIC}) and a physical name; messages by their producer key
 * ({@code MessageId.toProducerKey()}); durable subscriptions by {@code clientId:subscriptionName}.
 * Message bodies and subscription infos are opaque bytes (OpenWire, marshalled by the caller).
 *
 * <p>Thread-safe. Results that carry several values use the packed formats documented on each
 * method (big-endian, as {@link java.nio.ByteBuffer} reads by default; strings as an int32 byte
 * length and UTF-8; byte arrays as an int32 length, -1 for null, and the bytes).
 * After {@link #close()} every call fails with {@link ErrorCode#CLOSED}.
 *
 * <p>A replication node's store ({@link Node#store()}) is this class too: the node owns it, and
 * once the node stops being master its calls fail with {@link ErrorCode#CLOSED}.
 */
public final class Store implements AutoCloseable {
    static {
        NativeLibrary.load();
    }

    public static final int QUEUE = 0;
    public static final int TOPIC = 1;
    public static final int TEMP_QUEUE = 2;
    public static final int TEMP_TOPIC = 3;

    /** In {@link #acknowledge} and commit results: the message left the store. */
    public static final long DELETED_FLAG = 1L << 62;

    private final Path directory;
    private final NativeResource resource;
    private final Cleaner.Cleanable cleanable;
    /** The {@link Node} whose store this is (kept reachable while the store is), or null. */
    private final Node node;

    private Store(Path directory, long handle, Node node) {
        this.directory = directory;
        this.node = node;
        this.resource = new NativeResource(handle, Store::close0, null);
        this.cleanable = NativeLibrary.CLEANER.register(this, resource);
    }

    /** Wraps a store handle issued by a node ({@link Node#store()}): closing it only releases it. */
    static Store ofNode(Path directory, long handle, Node node) {
        return new Store(directory, handle, Objects.requireNonNull(node, "node"));
    }

    /**
     * Opens (creating it if needed) the store in {@code dir}: the journal is recovered, the
     * index loaded from its checkpoint and the journal after it replayed.
     */
    public static Store open(Path dir, StoreOptions opts) throws IOException {
        Objects.requireNonNull(dir, "dir");
        Objects.requireNonNull(opts, "opts");
        Path absolute = dir.toAbsolutePath();
        Files.createDirectories(absolute);
        JournalOptions j = opts.journal();
        long handle = open0(absolute.toString(), j.maxFileLength(), j.maxBatchSize(), j.syncStrategy().nativeValue,
                j.syncIntervalMillis(), j.preallocation().nativeValue, opts.checkpointEvery(),
                opts.deleteAllMessages());
        return new Store(absolute, handle, null);
    }

    public Path directory() {
        return directory;
    }

    /**
     * Whether {@link #close()} was called. (The store of a node that is no longer master is not
     * closed in this sense, but its calls fail with {@link ErrorCode#CLOSED}.)
     */
    public boolean isClosed() {
        return resource.isClosed();
    }

    private long h() {
        return resource.handle;
    }

    /**
     * Stores a message.
     *
     * @param prioritized whether the destination orders by priority (KahaDB's prioritySupported)
     * @return its sequence in the destination, or -1 if a message with this id is stored already
     *     (or a topic has no subscription to keep it for)
     */
    public long add(int kind, String destination, String messageId, int priority, boolean prioritized,
            byte[] body, int off, int len, boolean sync) throws KahaDBException {
        Objects.checkFromIndexSize(off, len, Objects.requireNonNull(body, "body").length);
        try {
            return add0(h(), kind, destination, messageId, priority, prioritized, body, off, len, sync, false);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Replaces a stored message's content, keeping its place.
     *
     * @return the new sequence if the message was not stored any more (then it is stored anew),
     *     else -1
     */
    public long update(int kind, String destination, String messageId, int priority, boolean prioritized,
            byte[] body, int off, int len, boolean sync) throws KahaDBException {
        Objects.checkFromIndexSize(off, len, Objects.requireNonNull(body, "body").length);
        try {
            return add0(h(), kind, destination, messageId, priority, prioritized, body, off, len, sync, true);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * A queue message consumed.
     *
     * @return the body size of the removed message, or -1 if it was not stored
     */
    public long remove(int kind, String destination, String messageId, boolean sync) throws KahaDBException {
        try {
            return remove0(h(), kind, destination, null, messageId, sync);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * A durable subscription is done with a topic message.
     *
     * @return -1 if the message was not pending for the subscription; else its body size, with
     *     {@link #DELETED_FLAG} set when no subscription needs it any more
     */
    public long acknowledge(int kind, String destination, String subscription, String messageId, boolean sync)
            throws KahaDBException {
        Objects.requireNonNull(subscription, "subscription");
        try {
            return remove0(h(), kind, destination, subscription, messageId, sync);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** Stores a durable subscription; {@code info} is the marshalled {@code SubscriptionInfo}. */
    public void subscribe(int kind, String destination, String subscription, byte[] info, boolean retroactive,
            boolean sync) throws KahaDBException {
        try {
            subscribe0(h(), kind, destination, subscription, Objects.requireNonNull(info, "info"), retroactive,
                    sync);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** Deletes a durable subscription. Returns whether it existed. */
    public boolean unsubscribe(int kind, String destination, String subscription, boolean sync)
            throws KahaDBException {
        try {
            return unsubscribe0(h(), kind, destination, subscription, sync);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** Removes a destination with its messages and subscriptions. Returns whether it existed. */
    public boolean removeDestination(int kind, String destination, boolean sync) throws KahaDBException {
        try {
            return removeDestination0(h(), kind, destination, sync);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Commits a transaction that was not prepared: its operations (built with {@link TxOps}) and
     * the commit, as one contiguous group.
     *
     * @param tx {@link TxOps#localTx} or {@link TxOps#xaTx}
     * @return one value per operation, in order: for an add its sequence (-1 for a duplicate);
     *     for a remove or acknowledgement as {@link #acknowledge} returns
     */
    public long[] commit(byte[] tx, TxOps ops, boolean sync) throws KahaDBException {
        Objects.requireNonNull(tx, "tx");
        Objects.requireNonNull(ops, "ops");
        try {
            return commit0(h(), tx, ops.toByteArray(), sync);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** Prepares an XA transaction (always synced). */
    public void prepare(byte[] tx, TxOps ops) throws KahaDBException {
        Objects.requireNonNull(tx, "tx");
        Objects.requireNonNull(ops, "ops");
        try {
            prepare0(h(), tx, ops.toByteArray());
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** Commits a prepared transaction; results as {@link #commit}, or null if it was not prepared. */
    public long[] commitPrepared(byte[] tx, boolean sync) throws KahaDBException {
        Objects.requireNonNull(tx, "tx");
        try {
            return outcome0(h(), tx, true, sync);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** Rolls a prepared transaction back. Returns whether it was prepared. */
    public boolean rollbackPrepared(byte[] tx, boolean sync) throws KahaDBException {
        Objects.requireNonNull(tx, "tx");
        try {
            return outcome0(h(), tx, false, sync) != null;
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * The prepared transactions. Packed: int32 count, then per transaction its id (as
     * {@link TxOps#localTx}/{@link TxOps#xaTx} encode it) and its operations (as
     * {@link TxOps#toByteArray()} encodes them; message bodies and XA ack bytes included).
     */
    public byte[] preparedTransactions() throws KahaDBException {
        try {
            return prepared0(h());
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** Destinations with stored state. Packed: int32 count, then per destination int8 type, string name. */
    public byte[] destinations() throws KahaDBException {
        try {
            return destinations0(h());
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * {@code [count, bytes]} of the messages stored in a destination, or (with a subscription)
     * of those that subscription still has to consume.
     */
    public long[] counts(int kind, String destination, String subscription) throws KahaDBException {
        try {
            return counts0(h(), kind, destination, subscription);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** The sequence the next message stored in the destination will get. */
    public long nextSequence(int kind, String destination) throws KahaDBException {
        try {
            return nextSequence0(h(), kind, destination);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** Stored subscriptions of a topic. Packed: int32 count, then per subscription string key, bytes info. */
    public byte[] subscriptions(int kind, String destination) throws KahaDBException {
        try {
            return subscriptions0(h(), kind, destination);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** The body of a stored message, or null. */
    public byte[] getMessage(int kind, String destination, String messageId) throws KahaDBException {
        try {
            return getMessage0(h(), kind, destination, messageId);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * The next stored messages in store order: the high-priority lane from sequence
     * {@code fromHigh}, then the default lane from {@code fromDefault}, then the low lane from
     * {@code fromLow}, each in sequence order and below {@code limit}; with a subscription only
     * the messages it still has to consume. At most {@code maxCount} messages, stopping after the
     * one that reaches {@code maxBytes} of bodies. Packed: int32 count, then per message int64
     * sequence, int8 lane (0 high, 1 default, 2 low), string message id, bytes body.
     */
    public byte[] read(int kind, String destination, String subscription, long fromHigh, long fromDefault,
            long fromLow, long limit, int maxCount, int maxBytes) throws KahaDBException {
        try {
            return read0(h(), kind, destination, subscription, fromHigh, fromDefault, fromLow, limit, maxCount,
                    maxBytes);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** The highest producer sequence stored for a producer id, or -1. */
    public long lastProducerSequence(String producerId) throws KahaDBException {
        try {
            return lastProducerSequence0(h(), producerId);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Writes a checkpoint of the index; with {@code cleanup} also deletes data files nothing needs
     * (relocating the few live records of old files first). Without {@code cleanup} this is meant
     * for a timer: it is skipped while less time has passed since the last checkpoint than 20
     * times the pause that one imposed on writers, so a large index is not paused too often.
     */
    public void checkpoint(boolean cleanup) throws KahaDBException {
        try {
            checkpoint0(h(), cleanup);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** Bytes the store's files take on disk (data files and index). A cheap call. */
    public long diskUsage() throws KahaDBException {
        try {
            return diskUsage0(h());
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Checkpoints and closes. Calling it again does nothing. A replication node's store
     * ({@link Node#store()}) is only released: the node owns it and keeps it open while it is
     * master.
     */
    @Override
    public synchronized void close() throws KahaDBException {
        if (resource.isClosed()) {
            return;
        }
        try {
            resource.close();
        } finally {
            cleanable.clean();
        }
    }

    @Override
    public String toString() {
        return "Store[" + directory + (node != null ? ", of " + node.uri() : "") + (isClosed() ? ", closed]" : "]");
    }

    private static native long open0(String dir, int maxFileLength, int maxBatchSize, int syncStrategy,
            long syncIntervalMillis, int preallocation, long checkpointEvery, boolean deleteAll)
            throws KahaDBException;

    private static native void close0(long store) throws KahaDBException;

    private static native long add0(long store, int kind, String destination, String messageId, int priority,
            boolean prioritized, byte[] body, int off, int len, boolean sync, boolean update) throws KahaDBException;

    private static native long remove0(long store, int kind, String destination, String subscription,
            String messageId, boolean sync) throws KahaDBException;

    private static native void subscribe0(long store, int kind, String destination, String subscription,
            byte[] info, boolean retroactive, boolean sync) throws KahaDBException;

    private static native boolean unsubscribe0(long store, int kind, String destination, String subscription,
            boolean sync) throws KahaDBException;

    private static native boolean removeDestination0(long store, int kind, String destination, boolean sync)
            throws KahaDBException;

    private static native long[] commit0(long store, byte[] tx, byte[] ops, boolean sync) throws KahaDBException;

    private static native void prepare0(long store, byte[] tx, byte[] ops) throws KahaDBException;

    /** Commit ({@code commit}) or rollback of a prepared transaction; null if it was not prepared. */
    private static native long[] outcome0(long store, byte[] tx, boolean commit, boolean sync)
            throws KahaDBException;

    private static native byte[] prepared0(long store) throws KahaDBException;

    private static native byte[] destinations0(long store) throws KahaDBException;

    private static native long[] counts0(long store, int kind, String destination, String subscription)
            throws KahaDBException;

    private static native long nextSequence0(long store, int kind, String destination) throws KahaDBException;

    private static native byte[] subscriptions0(long store, int kind, String destination) throws KahaDBException;

    private static native byte[] getMessage0(long store, int kind, String destination, String messageId)
            throws KahaDBException;

    private static native byte[] read0(long store, int kind, String destination, String subscription,
            long fromHigh, long fromDefault, long fromLow, long limit, int maxCount, int maxBytes)
            throws KahaDBException;

    private static native long lastProducerSequence0(long store, String producerId) throws KahaDBException;

    private static native void checkpoint0(long store, boolean cleanup) throws KahaDBException;

    private static native long diskUsage0(long store) throws KahaDBException;
}
