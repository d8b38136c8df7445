package dev.kahadb.activemq;

/**
 * JMX view of a {@link ReplicatedBroker}, registered as
 * {@code dev.kahadb:type=ReplicatedBroker,name="<kdbr uri>"}.
 */
public interface ReplicatedBrokerMBean {
    /** {@code MASTER}, {@code SLAVE} or {@code STOPPED}, as the election last said. */
    String getRole();

    /** The epoch of the last election event. */
    long getEpoch();

    /** A slave's master ({@code kdbr://}), a master's own address, else null. */
    String getMasterUri();

    /** This node's replication address. */
    String getUri();

    String getDirectory();

    String getBrokerURI();

    /** ZooKeeper connect string, or {@code none} (the static elector). */
    String getZookeeper();

    /** Whether the broker made from {@code brokerURI} runs in this process now. */
    boolean isBrokerStarted();

    int getMinimumReplicas();

    /** Changes {@code minimumReplicas} of the node at once (kept across role changes). */
    void setMinimumReplicas(int minimumReplicas);

    /** A master's live slaves (0 otherwise). */
    long getLiveSlaves();

    /** A master's slaves, one line each: {@code host:port STATE lag=N}. */
    String[] getSlaves();

    /** A slave's link to its master ({@code CONNECTING}, {@code SYNCING}, {@code LIVE}), else null. */
    String getLinkState();

    /** The node's replication status as JSON. */
    String getReplicationStatus();

    /** The last election event, with the time it arrived. */
    String getLastEvent();

    /** The last error (a broker that failed to start, ...), or null. */
    String getLastError();
}
