package dev.kahadb;

import java.nio.file.Path;
import java.time.Duration;
import java.util.Objects;

/**
 * Options for {@link Node#open(NodeOptions)}, set fluently:
 *
 * <pre>{@code
 * NodeOptions opts = new NodeOptions()
 *         .directory(Path.of("data/node-a"))
 *         .uri("kdbr://10.0.0.1:61617")
 *         .minimumReplicas(1)
 *         .replicationTimeout(Duration.ofSeconds(5));
 * }</pre>
 *
 * <p>The directory and the address are required; every other value defaults as in the native
 * library. Setters do not validate numbers or addresses: {@link Node#open(NodeOptions) open}
 * rejects a bad value with a {@link KahaDBException} of code {@link ErrorCode#CONFIG}.
 */
public final class NodeOptions {
    /** Default cluster name. */
    public static final String DEFAULT_CLUSTER = "kahadb";
    /** Default time a synchronous write waits for {@code minimumReplicas} slaves: 10 seconds. */
    public static final long DEFAULT_REPLICATION_TIMEOUT_MILLIS = 10_000;
    /** Default number of concurrent transfer sessions of a slave's initial sync. */
    public static final int DEFAULT_TRANSFER_SESSIONS = 4;

    private Path directory;
    private String uri;
    private String cluster = DEFAULT_CLUSTER;
    private int minimumReplicas;
    private long replicationTimeoutMillis = DEFAULT_REPLICATION_TIMEOUT_MILLIS;
    private int transferSessions = DEFAULT_TRANSFER_SESSIONS;
    private StoreOptions store = new StoreOptions();

    /** Options with every value at its default (and no directory or address yet). */
    public NodeOptions() {
    }

    /** The node's directory: its journal, index and replication state. Required. */
    public Path directory() {
        return directory;
    }

    public NodeOptions directory(Path value) {
        this.directory = Objects.requireNonNull(value, "directory");
        return this;
    }

    /**
     * The node's address, {@code kdbr://host:port} (an IPv6 host in brackets): its identity, and
     * where it listens while master. Required.
     */
    public String uri() {
        return uri;
    }

    public NodeOptions uri(String value) {
        this.uri = Objects.requireNonNull(value, "uri");
        return this;
    }

    /** The cluster name: nodes of different clusters refuse each other. */
    public String cluster() {
        return cluster;
    }

    public NodeOptions cluster(String value) {
        this.cluster = Objects.requireNonNull(value, "cluster");
        return this;
    }

    /**
     * Synchronous writes of a master return once this many live slaves hold them (default 0: no
     * waiting). Changeable at run time with {@link Node#setMinimumReplicas(int)}.
     */
    public int minimumReplicas() {
        return minimumReplicas;
    }

    public NodeOptions minimumReplicas(int value) {
        this.minimumReplicas = value;
        return this;
    }

    /**
     * How long a synchronous write waits for {@code minimumReplicas} slaves before it fails with
     * {@link ErrorCode#REPLICATION_TIMEOUT}, in milliseconds. Changeable at run time with
     * {@link Node#setReplicationTimeout(Duration)}.
     */
    public long replicationTimeoutMillis() {
        return replicationTimeoutMillis;
    }

    public NodeOptions replicationTimeoutMillis(long value) {
        this.replicationTimeoutMillis = value;
        return this;
    }

    /** As {@link #replicationTimeoutMillis(long)}. */
    public NodeOptions replicationTimeout(Duration value) {
        return replicationTimeoutMillis(Objects.requireNonNull(value, "replicationTimeout").toMillis());
    }

    /** Concurrent transfer sessions of a slave's initial sync, 1 to 64. */
    public int transferSessions() {
        return transferSessions;
    }

    public NodeOptions transferSessions(int value) {
        this.transferSessions = value;
        return this;
    }

    /**
     * The store's options. The journal options must be the same on every node of a cluster, for
     * the files to come out identical; {@link StoreOptions#deleteAllMessages(boolean)} is refused
     * with {@link ErrorCode#CONFIG}: a node's data is the cluster's.
     */
    public StoreOptions store() {
        return store;
    }

    public NodeOptions store(StoreOptions value) {
        this.store = Objects.requireNonNull(value, "store");
        return this;
    }
}
