package dev.kahadb.activemq;

import org.apache.activemq.store.PersistenceAdapter;
import org.apache.activemq.store.PersistenceAdapterTestSupport;

/** ActiveMQ's PersistenceAdapterTestSupport on kahadb-rs. */
public class RsPersistenceAdapterTest extends PersistenceAdapterTestSupport {

    @Override
    protected PersistenceAdapter createPersistenceAdapter(boolean delete) throws Exception {
        return SuiteSupport.adapter("adapter", delete);
    }
}
