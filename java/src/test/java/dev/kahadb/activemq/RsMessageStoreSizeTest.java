package dev.kahadb.activemq;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import org.apache.activemq.store.AbstractMessageStoreSizeTest;
import org.apache.activemq.store.MessageStore;
import org.junit.Test;

/** ActiveMQ's message store size test on kahadb-rs, the store used without a broker. */
public class RsMessageStoreSizeTest extends AbstractMessageStoreSizeTest {
    private KahaRsPersistenceAdapter adapter;
    private MessageStore messageStore;

    private void open(boolean delete) throws Exception {
        adapter = SuiteSupport.adapter("store-size", delete);
        adapter.start();
        messageStore = adapter.createQueueMessageStore(destination);
        messageStore.start();
    }

    @Override
    protected void initStore() throws Exception {
        open(true);
    }

    @Override
    protected void destroyStore() throws Exception {
        if (adapter != null) {
            adapter.stop();
        }
    }

    @Override
    protected MessageStore getMessageStore() {
        return messageStore;
    }

    /** Count and size come back from the store after a restart and keep counting. */
    @Test
    public void testMessageSizeAfterReopen() throws Exception {
        writeMessages();
        adapter.stop();
        open(false);
        assertEquals(MESSAGE_COUNT, messageStore.getMessageCount());
        assertTrue(messageStore.getMessageSize() > MESSAGE_COUNT * testMessageSize);
        writeMessages();
        assertEquals(2 * MESSAGE_COUNT, messageStore.getMessageCount());
        assertTrue(messageStore.getMessageSize() > 2 * MESSAGE_COUNT * testMessageSize);
    }
}
