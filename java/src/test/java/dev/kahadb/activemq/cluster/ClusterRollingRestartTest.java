package dev.kahadb.activemq.cluster;

import static dev.kahadb.activemq.cluster.ClusterFaultSupport.awaitLiveSlave;
import static dev.kahadb.activemq.cluster.ClusterFaultSupport.awaitMaster;
import static dev.kahadb.activemq.cluster.ClusterFaultSupport.describe;
import static dev.kahadb.activemq.cluster.ClusterFaultSupport.millis;
import static dev.kahadb.activemq.cluster.ClusterFaultSupport.startOnCopiedClassPath;
import static dev.kahadb.activemq.cluster.ClusterFaultSupport.strictlyIncreasing;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.CleanupMode;
import org.junit.jupiter.api.io.TempDir;

/**
 * Three launcher processes and ZooKeeper under continuous load from a producer on the failover
 * URL: twice, every node in turn is stopped gracefully (SIGTERM) and started again, the slaves
 * first and the master last, each back as a live slave before the next one goes. Stopping a slave
 * leaves the master in place; stopping the master makes another node take over. Sends keep
 * being acknowledged after every step, and nothing acknowledged is lost.
 */
class ClusterRollingRestartTest {
    private static final String QUEUE = "rolling-restart";
    /** Sends acknowledged after each step before the next one. */
    private static final int ACKS_PER_STEP = 50;
    private static final long WAIT_MS = 120_000;
    /** Rolling restarts, one after the other (the second one restarts nodes the first one restarted). */
    private static final int PASSES = 2;

    /** Kept when the test fails: the nodes' logs are in it. */
    @TempDir(cleanup = CleanupMode.ON_SUCCESS)
    Path dir;

    @Test
    @Timeout(value = 10, unit = TimeUnit.MINUTES)
    void restartEveryNodeInTurn() throws Exception {
        LocalCluster.Options o = new LocalCluster.Options().nodes(3).minimumReplicas(1).sessionTimeoutMs(2000);
        long started = System.nanoTime();
        try (LocalCluster cluster = new LocalCluster(dir, LocalCluster.findProjectRoot(), o)) {
            startOnCopiedClassPath(cluster, dir);
            NumberedConsumer c = new NumberedConsumer();
            cluster.watchForSplitBrain();
            ClusterNode master = awaitMaster(cluster, null, WAIT_MS, "the first election");
            assertTrue(cluster.awaitLiveSlaves(master, 2, WAIT_MS),
                    "two live slaves at the start:" + describe(cluster));

            List<Long> epochs = new ArrayList<>(List.of(master.epoch()));
            List<String> steps = new ArrayList<>();
            try (NumberedProducer p = new NumberedProducer(cluster.failoverUrl(), QUEUE, 100, 0).start()) {
                assertTrue(p.awaitAcked(ACKS_PER_STEP, WAIT_MS), "no sends acknowledged at the start ("
                        + p.lastError() + ")" + describe(cluster));
                for (int pass = 1; pass <= PASSES; pass++) {
                    for (ClusterNode n : order(cluster, master)) {
                        master = restart(cluster, p, master, n, "pass " + pass, epochs, steps);
                    }
                }
                p.stop(30_000);

                BitSet acked = p.acked();
                c.drain(cluster.failoverUrl(), QUEUE, 5000, 300_000);
                BitSet received = c.received();
                BitSet unacked = (BitSet) received.clone();
                unacked.andNot(acked);
                List<Integer> missing = NumberedProducer.missing(acked, received, 20);

                String summary = String.format("rolling restart: %d passes over %d nodes in %d s; sends attempted %d,"
                        + " acknowledged %d, failed %d; received %d (%d distinct, %d never acknowledged), duplicates %d"
                        + " (%d flagged redelivered); epochs %s; steps: %s",
                        PASSES, cluster.nodes().size(), millis(started, System.nanoTime()) / 1000, p.attempted(),
                        acked.cardinality(), p.failed(), c.messages(), received.cardinality(), unacked.cardinality(),
                        c.duplicates(), c.redeliveredDuplicates(), epochs, String.join("; ", steps));
                System.out.println(summary);
                String context = "\n" + summary + describe(cluster);

                assertEquals(List.of(), missing, "acknowledged messages lost (the first 20)" + context);
                assertEquals(List.of(), cluster.splitBrains(), "two brokers ran at once" + context);
                assertTrue(strictlyIncreasing(epochs), "the masters' epochs did not strictly grow" + context);
                assertTrue(received.length() <= p.attempted(), "received a number never sent" + context);
            }
        }
    }

    /**
     * Stops {@code n} (SIGTERM), checks who is master then and that sends are acknowledged,
     * starts it again and waits until it is a live slave and more sends were acknowledged.
     *
     * @return the master after the step
     */
    private static ClusterNode restart(LocalCluster cluster, NumberedProducer p, ClusterNode master, ClusterNode n,
            String pass, List<Long> epochs, List<String> steps) throws Exception {
        boolean wasMaster = n == master;
        String where = pass + ", restarting " + n.name() + (wasMaster ? " (the master)" : " (a slave)");
        long t0 = System.nanoTime();
        assertTrue(n.stop(60), where + ": it did not stop within 60 s of SIGTERM" + describe(cluster));
        long stopped = System.nanoTime();
        ClusterNode now = awaitMaster(cluster, n, WAIT_MS, where);
        if (wasMaster) {
            assertNotSame(n, now, where + ": no other node took over" + describe(cluster));
            assertTrue(now.epoch() > epochs.get(epochs.size() - 1),
                    where + ": the new master's epoch did not grow: " + epochs + describe(cluster));
            epochs.add(now.epoch());
        } else {
            assertSame(master, now, where + ": the master changed" + describe(cluster));
        }
        long ack = p.firstAckAfter(stopped, WAIT_MS);
        assertTrue(ack > 0,
                where + ": no send acknowledged after the stop (" + p.lastError() + ")" + describe(cluster));
        n.start();
        assertTrue(awaitLiveSlave(now, n, 2, WAIT_MS),
                where + ": it is not back as a live slave of " + now.name() + describe(cluster));
        long back = System.nanoTime();
        assertTrue(p.awaitAcked(p.ackedCount() + ACKS_PER_STEP, WAIT_MS),
                where + ": sends are not acknowledged after the restart (" + p.lastError() + ")" + describe(cluster));
        steps.add(String.format("%s%s: stop %d ms, first ack after the stop %d ms, live slave again %d ms", n.name(),
                wasMaster ? " (master, " + now.name() + " took over)" : "", millis(t0, stopped), millis(stopped, ack),
                millis(stopped, back)));
        return now;
    }

    /** The slaves first, the master last. */
    private static List<ClusterNode> order(LocalCluster cluster, ClusterNode master) {
        List<ClusterNode> order = new ArrayList<>();
        for (ClusterNode n : cluster.nodes()) {
            if (n != master) {
                order.add(n);
            }
        }
        order.add(master);
        return order;
    }
}
