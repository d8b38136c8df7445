package dev.kahadb.activemq;

import java.io.IOException;
import java.util.Arrays;
import java.util.Collection;

import org.apache.activemq.broker.BrokerService;
import org.apache.activemq.store.AbstractVmConcurrentDispatchTest;
import org.junit.runner.RunWith;
import org.junit.runners.Parameterized;
import org.junit.runners.Parameterized.Parameters;

/**
 * ActiveMQ's concurrent VM dispatch test (30 consumers, message bodies shared with the store's
 * marshalling) on kahadb-rs. Each case runs for about ten seconds, so a subset of the stock
 * parameter grid: every message type once, queues (through a virtual topic) and a topic.
 */
@RunWith(Parameterized.class)
public class RsVmConcurrentDispatchTest extends AbstractVmConcurrentDispatchTest {

    @Parameters(name = "Type:{0}; ReduceMemoryFootPrint:{1}; UseTopic:{2}")
    public static Collection<Object[]> data() {
        return Arrays.asList(new Object[][] {
            {MessageType.TEXT, true, false},
            {MessageType.MAP, false, false},
            {MessageType.OBJECT, true, true},
        });
    }

    public RsVmConcurrentDispatchTest(MessageType messageType, boolean reduceMemoryFootPrint, boolean useTopic) {
        super(messageType, reduceMemoryFootPrint, useTopic);
    }

    @Override
    protected void configurePersistenceAdapter(BrokerService broker) throws IOException {
        try {
            broker.setPersistenceAdapter(SuiteSupport.adapter("vm-concurrent-dispatch", false));
        } catch (IOException e) {
            throw e;
        } catch (Exception e) {
            throw new IOException(e);
        }
    }
}
