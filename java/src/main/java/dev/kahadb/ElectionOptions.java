package dev.kahadb;

import java.util.Objects;

/**
 * How an {@link ElectedNode} is elected, set fluently:
 *
 * <pre>{@code
 * ElectionOptions election = new ElectionOptions()
 *         .zookeeper("10.0.0.5:2181,10.0.0.6:2181,10.0.0.7:2181")
 *         .sessionTimeoutMillis(4000);
 * }</pre>
 *
 * <p>Without a ZooKeeper address (the default) the static elector runs: a single node, no
 * ZooKeeper, master at once at the epoch after the one it knows. Setters do not validate:
 * {@link ElectedNode#start} rejects a bad value with a {@link KahaDBException} of code
 * {@link ErrorCode#CONFIG}.
 */
public final class ElectionOptions {
    /** Default ZooKeeper session timeout: 10 seconds. */
    public static final long DEFAULT_SESSION_TIMEOUT_MILLIS = 10_000;

    private String zookeeper;
    private String path;
    private long sessionTimeoutMillis = DEFAULT_SESSION_TIMEOUT_MILLIS;

    /** Options for the static elector, with every value at its default. */
    public ElectionOptions() {
    }

    /** The ZooKeeper ensemble ({@code host:port[,host:port...]}), or null for the static elector. */
    public String zookeeper() {
        return zookeeper;
    }

    /** The ZooKeeper ensemble, {@code host:port[,host:port...]}; null for the static elector. */
    public ElectionOptions zookeeper(String connectString) {
        this.zookeeper = connectString;
        return this;
    }

    /**
     * The root of the cluster's znodes (see {@code docs/ELECTION.md}), or null for the default
     * {@code /kahadb-rs/<cluster>}.
     */
    public String path() {
        return path;
    }

    /** The root of the cluster's znodes: absolute, not ending in {@code /}. */
    public ElectionOptions path(String rootPath) {
        this.path = Objects.requireNonNull(rootPath, "rootPath");
        return this;
    }

    /** The ZooKeeper session timeout asked for, in milliseconds (at least 400). */
    public long sessionTimeoutMillis() {
        return sessionTimeoutMillis;
    }

    public ElectionOptions sessionTimeoutMillis(long ms) {
        this.sessionTimeoutMillis = ms;
        return this;
    }

    @Override
    public String toString() {
        return "ElectionOptions[" + (zookeeper == null ? "static" : "zookeeper=" + zookeeper + ", path="
                + (path == null ? "(default)" : path) + ", sessionTimeoutMillis=" + sessionTimeoutMillis) + "]";
    }
}
