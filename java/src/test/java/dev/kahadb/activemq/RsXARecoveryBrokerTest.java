package dev.kahadb.activemq;

import junit.framework.Test;

import org.apache.activemq.broker.BrokerService;
import org.apache.activemq.broker.XARecoveryBrokerTest;

/**
 * ActiveMQ's XARecoveryBrokerTest on kahadb-rs. The base class creates the broker for a fresh
 * start with deleteAllMessagesOnStartup and the restarted one without, both through
 * {@link #configureBroker}.
 */
public class RsXARecoveryBrokerTest extends XARecoveryBrokerTest {

    @Override
    protected void configureBroker(BrokerService broker) throws Exception {
        super.configureBroker(broker);
        broker.setPersistenceAdapter(SuiteSupport.adapter("xa-recovery", false));
    }

    public static Test suite() {
        return suite(RsXARecoveryBrokerTest.class);
    }
}
