package dev.kahadb.activemq.cluster;

import static dev.kahadb.activemq.cluster.ClusterFaultSupport.awaitLiveSlave;
import static dev.kahadb.activemq.cluster.ClusterFaultSupport.awaitMaster;
import static dev.kahadb.activemq.cluster.ClusterFaultSupport.describe;
import static dev.kahadb.activemq.cluster.ClusterFaultSupport.max;
import static dev.kahadb.activemq.cluster.ClusterFaultSupport.median;
import static dev.kahadb.activemq.cluster.ClusterFaultSupport.millis;
import static dev.kahadb.activemq.cluster.ClusterFaultSupport.startOnCopiedClassPath;
import static dev.kahadb.activemq.cluster.ClusterFaultSupport.strictlyIncreasing;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.CleanupMode;
import org.junit.jupiter.api.io.TempDir;

/**
 * Three launcher processes and ZooKeeper under continuous load from a producer on the failover
 * URL: round after round the master, which has a live slave, is killed (SIGKILL), another node
 * takes over, and the killed node is started again and rejoins as a slave. Nothing acknowledged
 * may be lost, two brokers may never run at once, and every new master has a higher epoch.
 *
 * <p>{@code -Dkahadb.cluster.killRounds=N} changes the number of rounds (20).
 */
class ClusterKillRoundsTest {
    private static final String QUEUE = "kill-rounds";
    /** Sends acknowledged in each round before its kill. */
    private static final int ACKS_PER_ROUND = 50;
    private static final long WAIT_MS = 120_000;

    /** Kept when the test fails: the nodes' logs are in it. */
    @TempDir(cleanup = CleanupMode.ON_SUCCESS)
    Path dir;

    @Test
    @Timeout(value = 15, unit = TimeUnit.MINUTES)
    void killTheMasterRoundAfterRound() throws Exception {
        int rounds = Integer.getInteger("kahadb.cluster.killRounds", 20);
        LocalCluster.Options o = new LocalCluster.Options().nodes(3).minimumReplicas(1).sessionTimeoutMs(2000);
        long started = System.nanoTime();
        try (LocalCluster cluster = new LocalCluster(dir, LocalCluster.findProjectRoot(), o)) {
            startOnCopiedClassPath(cluster, dir);
            // Loaded now rather than at the end, for the same reason as the nodes' copied class path.
            NumberedConsumer c = new NumberedConsumer();
            cluster.watchForSplitBrain();
            ClusterNode first = awaitMaster(cluster, null, WAIT_MS, "the first election");
            assertTrue(cluster.awaitLiveSlaves(first, 2, WAIT_MS),
                    "two live slaves at the start:" + describe(cluster));

            List<Long> epochs = new ArrayList<>();
            List<Long> firstAckMs = new ArrayList<>();
            List<Long> brokerUpMs = new ArrayList<>();
            List<String> masters = new ArrayList<>();
            try (NumberedProducer p = new NumberedProducer(cluster.failoverUrl(), QUEUE, 100, 0).start()) {
                ClusterNode restarted = null;
                for (int round = 1; round <= rounds; round++) {
                    String where = "round " + round + " of " + rounds;
                    ClusterNode master = awaitMaster(cluster, null, WAIT_MS, where);
                    if (restarted != null) {
                        assertTrue(awaitLiveSlave(master, restarted, 2, WAIT_MS), where + ": " + restarted.name()
                                + ", started again, is not a live slave of " + master.name() + describe(cluster));
                    }
                    assertTrue(master.liveSlaves() >= 1, where + ": no live slave" + describe(cluster));
                    long epoch = master.epoch();
                    assertTrue(epochs.isEmpty() || epoch > epochs.get(epochs.size() - 1),
                            where + ": the epoch did not grow: " + epochs + " then " + epoch + describe(cluster));
                    epochs.add(epoch);
                    masters.add(master.name());
                    assertTrue(p.awaitAcked(p.ackedCount() + ACKS_PER_ROUND, WAIT_MS),
                            where + ": no sends acknowledged (" + p.lastError() + ")" + describe(cluster));

                    long t0 = System.nanoTime();
                    master.kill();
                    ClusterNode next =
                            awaitMaster(cluster, master, WAIT_MS, where + ", after killing " + master.name());
                    brokerUpMs.add(millis(t0, next.brokerUpAt()));
                    master.start();
                    restarted = master;
                    long ack = p.firstAckAfter(t0, WAIT_MS);
                    assertTrue(ack > 0, where + ": no send acknowledged after the kill of " + master.name() + " ("
                            + p.lastError() + ")" + describe(cluster));
                    firstAckMs.add(millis(t0, ack));
                }
                ClusterNode last = awaitMaster(cluster, null, WAIT_MS, "after the last round");
                assertTrue(last.epoch() > epochs.get(epochs.size() - 1), "the last master's epoch did not grow: "
                        + epochs + " then " + last.epoch() + describe(cluster));
                epochs.add(last.epoch());
                masters.add(last.name());
                assertTrue(p.awaitAcked(p.ackedCount() + ACKS_PER_ROUND, WAIT_MS),
                        "no sends acknowledged after the last round (" + p.lastError() + ")" + describe(cluster));
                p.stop(30_000);

                BitSet acked = p.acked();
                c.drain(cluster.failoverUrl(), QUEUE, 5000, 300_000);
                BitSet received = c.received();
                BitSet unacked = (BitSet) received.clone();
                unacked.andNot(acked);
                List<Integer> missing = NumberedProducer.missing(acked, received, 20);

                // Every broker start anywhere in the cluster at an epoch of its own.
                List<Long> brokerEpochs = new ArrayList<>();
                for (ClusterNode n : cluster.nodes()) {
                    brokerEpochs.addAll(n.masterEpochs());
                }
                Set<Long> distinct = new HashSet<>(brokerEpochs);

                String summary = String.format("kill rounds: %d rounds in %d s; sends attempted %d, acknowledged %d,"
                        + " failed %d; received %d (%d distinct, %d never acknowledged), duplicates %d (%d flagged"
                        + " redelivered); failover from the kill: broker up median %d ms max %d ms, first ack median %d"
                        + " ms max %d ms; masters %s; epochs %s",
                        rounds, millis(started, System.nanoTime()) / 1000, p.attempted(), acked.cardinality(),
                        p.failed(), c.messages(), received.cardinality(), unacked.cardinality(), c.duplicates(),
                        c.redeliveredDuplicates(), median(brokerUpMs), max(brokerUpMs), median(firstAckMs),
                        max(firstAckMs), masters, epochs);
                System.out.println(summary);
                String context = "\n" + summary + describe(cluster);

                assertEquals(List.of(), missing, "acknowledged messages lost (the first 20)" + context);
                assertEquals(List.of(), cluster.splitBrains(), "two brokers ran at once" + context);
                assertTrue(strictlyIncreasing(epochs), "the masters' epochs did not strictly grow" + context);
                assertEquals(brokerEpochs.size(), distinct.size(),
                        "two broker starts at one epoch: " + brokerEpochs + context);
                assertTrue(c.duplicates() <= rounds,
                        "more duplicates than rounds (at most one send is in flight at each kill)" + context);
                assertTrue(received.length() <= p.attempted(), "received a number never sent" + context);
            }
        }
    }
}
