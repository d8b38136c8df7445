package dev.kahadb.activemq;

import junit.framework.Test;

import org.apache.activemq.broker.BrokerService;
import org.apache.activemq.broker.region.cursors.CursorQueueStoreTest;

/**
 * ActiveMQ's store cursor test for queues on kahadb-rs (its own suite() for the combinations).
 * The slow consumer of testSendWhilstConsume sleeps 50 ms a message, so one combination of
 * the stock four (about 20 s each) is run.
 */
public class RsCursorQueueStoreTest extends CursorQueueStoreTest {

    @Override
    protected void configureBroker(BrokerService answer) throws Exception {
        super.configureBroker(answer);
        answer.setPersistenceAdapter(SuiteSupport.adapter("cursor-queue-store", false));
    }

    @Override
    public void initCombosForTestSendWhilstConsume() {
        addCombinationValues("MESSAGE_COUNT", new Object[] {400});
        addCombinationValues("PREFETCH_SIZE", new Object[] {50});
    }

    public static Test suite() {
        return suite(RsCursorQueueStoreTest.class);
    }
}
