package dev.kahadb;

import java.io.IOException;
import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Objects;

/**
 * A replication node: one directory (journal, index, replication state) and one
 * {@code kdbr://host:port} address (its identity, and where it listens while master). It is
 * {@linkplain Role#STOPPED stopped}, {@linkplain Role#MASTER master} or
 * {@linkplain Role#SLAVE slave}:
 *
 * <ul>
 *   <li>a master's store is open ({@link #store()}); its synchronous writes return once
 *       {@code minimumReplicas} live slaves hold them, or fail with
 *       {@link ErrorCode#REPLICATION_TIMEOUT} after the replication timeout (the write is on the
 *       master's disk all the same); it serves any number of slaves;
 *   <li>a slave copies its master's journal (initial sync, then the live stream, reconnecting
 *       whenever the link ends) and keeps a hot standby index, so that a
 *       {@linkplain #promote(long) promotion} opens the store without a replay.
 * </ul>
 *
 * <p>A master's epoch only grows and is kept in the directory: a node refuses to become master
 * at an epoch older than the highest it knows ({@link ErrorCode#ILLEGAL_STATE}), and a slave
 * learns its master's epoch.
 *
 * <p>Thread-safe; role changes are serialised. After {@link #close()} every call fails with
 * {@link ErrorCode#CLOSED}.
 */
public final class Node implements AutoCloseable {
    static {
        NativeLibrary.load();
    }

    /** A node's role. */
    public enum Role {
        /** Neither master nor slave. */
        STOPPED,
        /** Its store is open and it serves slaves. */
        MASTER,
        /** It copies its master's journal. */
        SLAVE
    }

    private final Path directory;
    private final String uri;
    private final NativeResource resource;
    private final Cleaner.Cleanable cleanable;

    private Node(Path directory, String uri, long handle) {
        this.directory = directory;
        this.uri = uri;
        this.resource = new NativeResource(handle, Node::close0, null);
        this.cleanable = NativeLibrary.CLEANER.register(this, resource);
    }

    /**
     * The node of an {@link ElectedNode}, on a handle that only releases the node when closed
     * (the election owns it).
     */
    static Node ofElected(Path directory, String uri, long handle) {
        return new Node(directory, uri, handle);
    }

    /**
     * Opens a node, stopped: checks the options, creates the directory if needed and reads the
     * epoch the node knows. Nothing listens and no store is open until {@link #startMaster(long)}
     * or {@link #startSlave(String)}.
     *
     * @throws NullPointerException if the options have no directory or no address
     * @throws KahaDBException {@link ErrorCode#CONFIG} for a bad address or option,
     *     {@link ErrorCode#CORRUPT} for a damaged epoch file, {@link ErrorCode#IO}
     */
    public static Node open(NodeOptions opts) throws IOException {
        Objects.requireNonNull(opts, "opts");
        Path dir = Objects.requireNonNull(opts.directory(), "opts.directory").toAbsolutePath();
        String uri = Objects.requireNonNull(opts.uri(), "opts.uri");
        Files.createDirectories(dir);
        StoreOptions s = opts.store();
        JournalOptions j = s.journal();
        long handle = open0(dir.toString(), uri, opts.cluster(), opts.minimumReplicas(),
                opts.replicationTimeoutMillis(), opts.transferSessions(), j.maxFileLength(), j.maxBatchSize(),
                j.syncStrategy().nativeValue, j.syncIntervalMillis(), j.preallocation().nativeValue,
                s.checkpointEvery(), s.deleteAllMessages());
        return new Node(dir, uri, handle);
    }

    public Path directory() {
        return directory;
    }

    /** The node's address, as given in its options. */
    public String uri() {
        return uri;
    }

    public boolean isClosed() {
        return resource.isClosed();
    }

    private long h() {
        return resource.handle;
    }

    /**
     * Becomes master at {@code epoch}, at least the highest epoch the node knows: listens on its
     * address, opens its store (from the hot standby index when it was a slave) and serves
     * slaves. A stale epoch or an address that cannot be listened on changes nothing; a later
     * failure (recording the epoch, opening the store) leaves the node stopped.
     *
     * @throws KahaDBException {@link ErrorCode#ILLEGAL_STATE} (already master, or a stale
     *     epoch), {@link ErrorCode#IO} (e.g. the address is in use), {@link ErrorCode#LOCKED},
     *     {@link ErrorCode#INVALID_ARGUMENT} (a negative epoch)
     */
    public void startMaster(long epoch) throws KahaDBException {
        try {
            startMaster0(h(), epoch);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Becomes a slave of the master at {@code masterUri} ({@code kdbr://host:port}). A master
     * steps down first: its store closes (writes waiting for replicas fail, its {@link Store}s
     * report {@link ErrorCode#CLOSED}). The link runs in the background and reconnects whenever
     * it ends; {@link #status()} tells where it stands.
     *
     * @throws KahaDBException {@link ErrorCode#CONFIG} (not a kdbr address, or the node's own)
     */
    public void startSlave(String masterUri) throws KahaDBException {
        Objects.requireNonNull(masterUri, "masterUri");
        try {
            startSlave0(h(), masterUri);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Slave to master at {@code epoch} (see {@link #startMaster(long)}).
     *
     * @throws KahaDBException {@link ErrorCode#ILLEGAL_STATE} when the node is not a slave, and
     *     as {@link #startMaster(long)}
     */
    public void promote(long epoch) throws KahaDBException {
        try {
            promote0(h(), epoch);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Master to slave of {@code masterUri} (see {@link #startSlave(String)}).
     *
     * @throws KahaDBException {@link ErrorCode#ILLEGAL_STATE} when the node is not master, and
     *     as {@link #startSlave(String)}
     */
    public void demote(String masterUri) throws KahaDBException {
        Objects.requireNonNull(masterUri, "masterUri");
        try {
            demote0(h(), masterUri);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** Stops whatever the node does (a master's store closes). Stopping a stopped node does nothing. */
    public void stop() throws KahaDBException {
        try {
            stop0(h());
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    public Role role() throws KahaDBException {
        try {
            return Role.values()[role0(h())];
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** The highest epoch the node knows (its own as master, its master's as a slave); 0 for a new node. */
    public long epoch() throws KahaDBException {
        try {
            return epoch0(h());
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** The node's status. */
    public NodeStatus status() throws KahaDBException {
        return NodeStatus.decode(statusBytes());
    }

    /**
     * The status as the native library packs it (see {@link NodeStatus#decode(byte[])}). A
     * packed {@code byte[]} rather than the JSON of {@link #statusJson()}: the project's other
     * multi-valued results cross JNI that way, every field keeps its type without a parser here,
     * and the decoder is strict (enum values checked, no byte missing or left over).
     */
    byte[] statusBytes() throws KahaDBException {
        try {
            return status0(h());
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** The node's status as the JSON object the C API gives (for logs and tools). */
    public String statusJson() throws KahaDBException {
        try {
            return statusJson0(h());
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Changes {@code minimumReplicas}: it takes effect at once, also for synchronous writes
     * already waiting, and is kept across role changes.
     *
     * @throws KahaDBException {@link ErrorCode#INVALID_ARGUMENT} for a negative value
     */
    public void setMinimumReplicas(int minimumReplicas) throws KahaDBException {
        try {
            setMinimumReplicas0(h(), minimumReplicas);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Changes how long synchronous writes wait for {@code minimumReplicas} slaves (millisecond
     * precision); kept across role changes.
     *
     * @throws KahaDBException {@link ErrorCode#INVALID_ARGUMENT} for a negative duration
     */
    public void setReplicationTimeout(Duration timeout) throws KahaDBException {
        long millis = Objects.requireNonNull(timeout, "timeout").toMillis();
        try {
            setReplicationTimeout0(h(), millis);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Waits until the node is master with at least {@code count} live slaves.
     *
     * @return whether it is (false on timeout, or when the node is not master then)
     */
    public boolean waitForLiveSlaves(int count, Duration timeout) throws KahaDBException {
        long millis = Objects.requireNonNull(timeout, "timeout").toMillis();
        try {
            return waitForLiveSlaves0(h(), count, millis);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * The master's store: every {@link Store} call works on it while the node stays master. The
     * node owns the store, so {@link Store#close()} on the result only releases it (the store
     * stays open for the node and other callers). Once the node stops being master (a demote, a
     * stop, {@link #close()}) calls on it fail with {@link ErrorCode#CLOSED}, also after the node
     * becomes master again: ask for the store again then. The result keeps this node reachable.
     *
     * @throws KahaDBException {@link ErrorCode#ILLEGAL_STATE} when the node is not master
     */
    public Store store() throws KahaDBException {
        try {
            return Store.ofNode(directory, store0(h()), this);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Stops the node (as {@link #stop()}) and releases it; the {@link Store}s it handed out report
     * {@link ErrorCode#CLOSED}. Calling it again does nothing.
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
        return "Node[" + uri + ", " + directory + (isClosed() ? ", closed]" : "]");
    }

    private static native long open0(String dir, String uri, String cluster, int minimumReplicas,
            long replicationTimeoutMillis, int transferSessions, int maxFileLength, int maxBatchSize,
            int syncStrategy, long syncIntervalMillis, int preallocation, long checkpointEvery, boolean deleteAll)
            throws KahaDBException;

    private static native void close0(long node) throws KahaDBException;

    private static native void startMaster0(long node, long epoch) throws KahaDBException;

    private static native void startSlave0(long node, String masterUri) throws KahaDBException;

    private static native void promote0(long node, long epoch) throws KahaDBException;

    private static native void demote0(long node, String masterUri) throws KahaDBException;

    private static native void stop0(long node) throws KahaDBException;

    private static native int role0(long node) throws KahaDBException;

    private static native long epoch0(long node) throws KahaDBException;

    private static native byte[] status0(long node) throws KahaDBException;

    private static native String statusJson0(long node) throws KahaDBException;

    private static native void setMinimumReplicas0(long node, int minimumReplicas) throws KahaDBException;

    private static native void setReplicationTimeout0(long node, long millis) throws KahaDBException;

    private static native boolean waitForLiveSlaves0(long node, int count, long timeoutMillis)
            throws KahaDBException;

    private static native long store0(long node) throws KahaDBException;
}
