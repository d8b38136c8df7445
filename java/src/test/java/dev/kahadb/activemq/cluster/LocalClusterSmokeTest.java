package dev.kahadb.activemq.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.BitSet;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Three launcher processes and ZooKeeper: the master is killed once under load. */
class LocalClusterSmokeTest {
    @TempDir
    Path dir;

    @Test
    void oneFailover() throws Exception {
        LocalCluster.Options o = new LocalCluster.Options().sessionTimeoutMs(2000);
        try (LocalCluster cluster = new LocalCluster(dir, LocalCluster.findProjectRoot(), o)) {
            cluster.start();
            ClusterNode master = cluster.awaitMaster(null, 120_000);
            assertTrue(cluster.awaitLiveSlaves(master, 2, 60_000), "two live slaves: " + cluster.nodes());
            try (NumberedProducer p = new NumberedProducer(cluster.failoverUrl(), "smoke", 100, 0).start()) {
                assertTrue(p.awaitAcked(200, 60_000), "200 acked: " + p.lastError());
                long t0 = System.nanoTime();
                master.kill();
                ClusterNode next = cluster.awaitMaster(master, 60_000);
                long first = p.firstAckAfter(t0, 60_000);
                System.out.printf("failover: broker up after %d ms, first ack after %d ms%n",
                        (next.brokerUpAt() - t0) / 1_000_000, (first - t0) / 1_000_000);
                assertTrue(p.awaitAcked(p.ackedCount() + 100, 60_000));
                p.stop(30_000);
                BitSet acked = p.acked();
                NumberedConsumer c = new NumberedConsumer().drain(cluster.failoverUrl(), "smoke", 3000, 120_000);
                assertEquals(java.util.List.of(), NumberedProducer.missing(acked, c.received(), 20));
                System.out.printf("acked %d received %d duplicates %d%n", acked.cardinality(), c.messages(), c.duplicates());
            }
        }
    }
}
