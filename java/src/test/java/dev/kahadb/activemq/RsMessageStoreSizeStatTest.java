package dev.kahadb.activemq;

import java.io.IOException;
import java.util.Arrays;
import java.util.Collection;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.activemq.broker.BrokerService;
import org.apache.activemq.broker.region.Destination;
import org.apache.activemq.store.AbstractMessageStoreSizeStatTest;
import org.junit.Test;
import org.junit.runner.RunWith;
import org.junit.runners.Parameterized;
import org.junit.runners.Parameterized.Parameters;

/** ActiveMQ's store size statistics tests on kahadb-rs, with and without subscription statistics. */
@RunWith(Parameterized.class)
public class RsMessageStoreSizeStatTest extends AbstractMessageStoreSizeStatTest {

    @Parameters(name = "subStatsEnabled={0}")
    public static Collection<Object[]> data() {
        return Arrays.asList(new Object[][] {{true}, {false}});
    }

    private boolean fresh = true;

    public RsMessageStoreSizeStatTest(boolean subStatsEnabled) {
        super(subStatsEnabled);
    }

    @Override
    protected void setUpBroker(boolean clearDataDir) throws Exception {
        fresh = clearDataDir;
        super.setUpBroker(clearDataDir);
    }

    @Override
    protected void initPersistence(BrokerService brokerService) throws IOException {
        try {
            KahaRsPersistenceAdapter a = SuiteSupport.adapter("size-stat", fresh);
            a.setEnableSubscriptionStatistics(subStatsEnabled);
            brokerService.setPersistent(true);
            brokerService.setPersistenceAdapter(a);
        } catch (IOException e) {
            throw e;
        } catch (Exception e) {
            throw new IOException(e);
        }
    }

    /** Statistics come back from the store after a restart and keep counting. */
    @Test(timeout = 60000)
    public void testStatisticsAfterRestart() throws Exception {
        AtomicLong size = new AtomicLong();
        Destination dest = publishTestQueueMessages(150, size);
        verifyStats(dest, 150, size.get());
        stopBroker();
        setUpBroker(false);
        dest = publishTestQueueMessages(50, size);
        verifyStats(dest, 200, size.get());
    }
}
