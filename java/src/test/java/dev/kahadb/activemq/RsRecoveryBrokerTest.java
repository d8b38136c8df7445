package dev.kahadb.activemq;

import junit.framework.Test;

import org.apache.activemq.broker.BrokerService;
import org.apache.activemq.broker.RecoveryBrokerTest;

/** ActiveMQ's RecoveryBrokerTest on kahadb-rs (its own suite(): trap T36). */
public class RsRecoveryBrokerTest extends RecoveryBrokerTest {

    @Override
    protected BrokerService createBroker() throws Exception {
        BrokerService broker = new BrokerService();
        broker.setPersistenceAdapter(SuiteSupport.adapter("recovery", true));
        configureBroker(broker);
        return broker;
    }

    @Override
    protected BrokerService createRestartedBroker() throws Exception {
        BrokerService broker = new BrokerService();
        broker.setPersistenceAdapter(SuiteSupport.adapter("recovery", false));
        configureBroker(broker);
        return broker;
    }

    public static Test suite() {
        return suite(RsRecoveryBrokerTest.class);
    }
}
