package dev.kahadb.activemq;

import junit.framework.Test;

import org.apache.activemq.broker.BrokerService;
import org.apache.activemq.broker.BrokerTest;

/** ActiveMQ's BrokerTest on a persistent broker with kahadb-rs (traps T36, T37). */
public class RsBrokerTest extends BrokerTest {

    @Override
    protected void setUp() throws Exception {
        setAutoFail(true);
        super.setUp();
    }

    @Override
    protected BrokerService createBroker() throws Exception {
        BrokerService broker = new BrokerService();
        broker.setPersistent(true);
        broker.setPersistenceAdapter(SuiteSupport.adapter("broker", true));
        return broker;
    }

    public static Test suite() {
        return suite(RsBrokerTest.class);
    }
}
