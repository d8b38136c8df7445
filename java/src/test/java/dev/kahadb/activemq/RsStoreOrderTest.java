package dev.kahadb.activemq;

import org.apache.activemq.broker.BrokerService;
import org.apache.activemq.store.StoreOrderTest;

/** ActiveMQ's StoreOrderTest (AMQ-2594) on kahadb-rs. */
public class RsStoreOrderTest extends StoreOrderTest {

    @Override
    protected void setPersistentAdapter(BrokerService brokerService) throws Exception {
        brokerService.setPersistenceAdapter(SuiteSupport.adapter("store-order", false));
    }
}
