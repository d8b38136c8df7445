package dev.kahadb.activemq;

import org.apache.activemq.store.PersistenceAdapter;
import org.apache.activemq.usecases.DurableSubscriptionTestSupport;

/** ActiveMQ's durable subscription use cases on kahadb-rs (the broker deletes all at a fresh start). */
public class RsDurableSubscriptionTest extends DurableSubscriptionTestSupport {

    @Override
    protected PersistenceAdapter createPersistenceAdapter() throws Exception {
        return SuiteSupport.adapter("durable", false);
    }
}
