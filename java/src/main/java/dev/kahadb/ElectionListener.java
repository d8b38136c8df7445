package dev.kahadb;

/**
 * What an {@link ElectedNode} tells its host. The calls come on a dispatcher thread of their own
 * (never a thread of the election or of replication), one at a time and in order, so a slow
 * listener delays only later calls. An exception thrown by a method is logged (its stack trace
 * on standard error) and dropped; later events are still delivered.
 *
 * <p>{@link #stopped(String)} is always the last call: after it, the node holds no role until
 * the election gives it one again (the same listener then hears of it), or for good once the
 * elected node is {@linkplain ElectedNode#close() closed}.
 */
public interface ElectionListener {
    /**
     * The node is master at {@code epoch} (higher than any epoch handed out before): its store
     * is open ({@link Node#store()} on {@link ElectedNode#node()}).
     */
    void becameMaster(long epoch);

    /**
     * The node is a slave of the master at {@code masterUri} ({@code kdbr://host:port}), elected
     * at {@code epoch}: it copies that master's journal.
     */
    void becameSlave(String masterUri, long epoch);

    /**
     * The node's status changed in a way a host cares about: its role, epoch or master, the set
     * of its slaves or their states, or its link to its master (not on every new position).
     */
    default void statusChanged(NodeStatus status) {
    }

    /**
     * The node holds no role any more (a master has already stopped serving): the ZooKeeper
     * session was lost, the node could not take on the role it was given, or the elected node
     * is being closed; {@code reason} says which.
     */
    void stopped(String reason);
}
