package dev.kahadb.activemq;

import junit.framework.Test;

import org.apache.activemq.store.MessagePriorityTest;
import org.apache.activemq.store.PersistenceAdapter;

/** ActiveMQ's MessagePriorityTest on kahadb-rs (with its own suite() for the combinations). */
public class RsMessagePriorityTest extends MessagePriorityTest {

    @Override
    protected PersistenceAdapter createPersistenceAdapter(boolean delete) throws Exception {
        return SuiteSupport.adapter("priority", delete);
    }

    public static Test suite() {
        return suite(RsMessagePriorityTest.class);
    }
}
