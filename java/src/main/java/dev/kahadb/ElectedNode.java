package dev.kahadb;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;

/**
 * A replication {@link Node} whose role an election decides: ZooKeeper (several nodes, the most
 * up-to-date one master) or, without a ZooKeeper address, the static elector (a single node,
 * master at once). The {@link ElectionListener} hears what happens, on a dispatcher thread of
 * its own.
 *
 * <pre>{@code
 * try (ElectedNode elected = ElectedNode.start(nodeOptions, new ElectionOptions().zookeeper(zk), listener)) {
 *     // listener.becameMaster(epoch): elected.node().store() works while it is master
 * }
 * }</pre>
 *
 * <p>Do not change the node's role yourself ({@code startMaster}, {@code promote}, ...): the
 * election does. Unlike a {@link Node}, an elected node is not closed by the garbage collector:
 * it takes part in the election until {@link #close()}. Thread-safe.
 */
public final class ElectedNode implements AutoCloseable {
    static {
        NativeLibrary.load();
    }

    private final NativeResource resource;
    private final Node node;

    private ElectedNode(long handle, Node node) {
        this.resource = new NativeResource(handle, ElectedNode::close0, null);
        this.node = node;
    }

    /**
     * Opens the node of {@code node} (as {@link Node#open(NodeOptions)}) and starts the election
     * of {@code election} for it; {@code listener} hears what happens from then on.
     *
     * @throws NullPointerException if an argument is null, or the options have no directory or
     *     no address
     * @throws KahaDBException {@link ErrorCode#CONFIG} for a bad address or option (a ZooKeeper
     *     path that is not absolute, a session timeout under 400 ms, ...), {@link ErrorCode#IO},
     *     {@link ErrorCode#CORRUPT}
     */
    public static ElectedNode start(NodeOptions node, ElectionOptions election, ElectionListener listener)
            throws IOException {
        Objects.requireNonNull(node, "node");
        Objects.requireNonNull(election, "election");
        Objects.requireNonNull(listener, "listener");
        Path dir = Objects.requireNonNull(node.directory(), "node.directory").toAbsolutePath();
        String uri = Objects.requireNonNull(node.uri(), "node.uri");
        Files.createDirectories(dir);
        StoreOptions s = node.store();
        JournalOptions j = s.journal();
        long handle = start0(dir.toString(), uri, node.cluster(), node.minimumReplicas(),
                node.replicationTimeoutMillis(), node.transferSessions(), j.maxFileLength(), j.maxBatchSize(),
                j.syncStrategy().nativeValue, j.syncIntervalMillis(), j.preallocation().nativeValue,
                s.checkpointEvery(), s.deleteAllMessages(), election.zookeeper(), election.path(),
                election.sessionTimeoutMillis(), listener);
        try {
            return new ElectedNode(handle, Node.ofElected(dir, uri, node0(handle)));
        } catch (KahaDBException | RuntimeException e) {
            try {
                close0(handle);
            } catch (KahaDBException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
    }

    /**
     * The replication node the election drives: its {@link Node#status() status}, its
     * {@link Node#store() store} while it is master. Closing it only releases this object (the
     * election goes on, but this object reports {@link ErrorCode#CLOSED}); {@link #close()}
     * closes it too.
     */
    public Node node() {
        return node;
    }

    public boolean isClosed() {
        return resource.isClosed();
    }

    /**
     * Stops the node (a master stops serving first) and leaves the election (a ZooKeeper session
     * ends, so that another node is elected at once). The listener's last events are delivered
     * first, ending with {@link ElectionListener#stopped(String)}; this waits at most 5 seconds
     * for a listener that does not return (which then gets the rest whenever it returns).
     * Calling it again does nothing.
     *
     * @throws UncheckedIOException if the native library reports a failure (not expected)
     */
    @Override
    public synchronized void close() {
        if (resource.isClosed()) {
            return;
        }
        try {
            try {
                node.close();
            } finally {
                resource.close();
            }
        } catch (KahaDBException e) {
            throw new UncheckedIOException(e);
        }
    }

    @Override
    public String toString() {
        return "ElectedNode[" + node.uri() + (isClosed() ? ", closed]" : "]");
    }

    private static native long start0(String dir, String uri, String cluster, int minimumReplicas,
            long replicationTimeoutMillis, int transferSessions, int maxFileLength, int maxBatchSize,
            int syncStrategy, long syncIntervalMillis, int preallocation, long checkpointEvery, boolean deleteAll,
            String zookeeper, String path, long sessionTimeoutMillis, ElectionListener listener)
            throws KahaDBException;

    private static native long node0(long elected) throws KahaDBException;

    private static native void close0(long elected) throws KahaDBException;
}
