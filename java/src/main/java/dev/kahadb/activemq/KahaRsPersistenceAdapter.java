package dev.kahadb.activemq;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.HashSet;
import java.util.Locale;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.activemq.broker.BrokerService;
import org.apache.activemq.broker.BrokerServiceAware;
import org.apache.activemq.broker.ConnectionContext;
import org.apache.activemq.broker.scheduler.JobSchedulerStore;
import org.apache.activemq.command.ActiveMQDestination;
import org.apache.activemq.command.ActiveMQQueue;
import org.apache.activemq.command.ActiveMQTempQueue;
import org.apache.activemq.command.ActiveMQTempTopic;
import org.apache.activemq.command.ActiveMQTopic;
import org.apache.activemq.command.ProducerId;
import org.apache.activemq.openwire.OpenWireFormat;
import org.apache.activemq.store.JournaledStore;
import org.apache.activemq.store.MessageStore;
import org.apache.activemq.store.NoLocalSubscriptionAware;
import org.apache.activemq.store.PersistenceAdapter;
import org.apache.activemq.store.TopicMessageStore;
import org.apache.activemq.store.TransactionStore;
import org.apache.activemq.usage.SystemUsage;
import org.apache.activemq.util.ServiceStopper;
import org.apache.activemq.util.ServiceSupport;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import dev.kahadb.ErrorCode;
import dev.kahadb.JournalOptions;
import dev.kahadb.KahaDBException;
import dev.kahadb.Node;
import dev.kahadb.Store;
import dev.kahadb.StoreOptions;

/**
 * An ActiveMQ Classic {@link PersistenceAdapter} backed by kahadb-rs: KahaDB's journal format,
 * with the index kept by the native library ({@link Store}).
 *
 * <p>Configure it as a bean (properties below, defaults in parentheses) and hand it to
 * {@link BrokerService#setPersistenceAdapter}, or in {@code activemq.xml} as a Spring bean
 * inside {@code <persistenceAdapter>} (see docs/ADAPTER.md):
 * <ul>
 *   <li>{@code directory} ({@code <broker data directory>/kahadb-rs}, i.e.
 *       {@code activemq-data/<brokerName>/kahadb-rs})
 *   <li>{@code journalMaxFileLength} (32 MiB), {@code journalMaxWriteBatchSize} (4 MiB, at most
 *       the file length)
 *   <li>{@code journalDiskSyncStrategy} ({@code always}; {@code periodic}, {@code never}),
 *       {@code journalDiskSyncInterval} (1000 ms, for {@code periodic}),
 *       {@code enableJournalDiskSyncs} (true; false is {@code never})
 *   <li>{@code preallocationStrategy} ({@code zeros}; {@code sparse_file}, {@code none})
 *   <li>{@code checkpointInterval} (5000 ms), {@code cleanupInterval} (30000 ms),
 *       {@code checkpointRecordCount} (100000)
 *   <li>{@code enableSubscriptionStatistics} (true)
 * </ul>
 *
 * <p>Not a {@code LockableServiceSupport}: the journal locks {@code <directory>/lock} itself,
 * and ActiveMQ's file locker on the same file would conflict with it.
 */
public class KahaRsPersistenceAdapter extends ServiceSupport
        implements PersistenceAdapter, BrokerServiceAware, NoLocalSubscriptionAware, JournaledStore {
    private static final Logger LOG = LoggerFactory.getLogger(KahaRsPersistenceAdapter.class);

    /** Our own metadata next to the journal: the OpenWire version messages are stored in. */
    static final String METADATA_FILE = "kahadb-rs.properties";
    private static final String OPENWIRE_VERSION = "openwireVersion";

    public static final int DEFAULT_JOURNAL_MAX_FILE_LENGTH = JournalOptions.DEFAULT_MAX_FILE_LENGTH;
    public static final long DEFAULT_CHECKPOINT_INTERVAL = 5_000;
    public static final long DEFAULT_CLEANUP_INTERVAL = 30_000;

    private File directory;
    private int journalMaxFileLength = DEFAULT_JOURNAL_MAX_FILE_LENGTH;
    private int journalMaxWriteBatchSize = -1;
    private JournalOptions.SyncStrategy syncStrategy = JournalOptions.SyncStrategy.ALWAYS;
    private long journalDiskSyncInterval = JournalOptions.DEFAULT_SYNC_INTERVAL_MILLIS;
    private JournalOptions.Preallocation preallocation = JournalOptions.Preallocation.ZEROS;
    private long checkpointInterval = DEFAULT_CHECKPOINT_INTERVAL;
    private long cleanupInterval = DEFAULT_CLEANUP_INTERVAL;
    private long checkpointRecordCount = StoreOptions.DEFAULT_CHECKPOINT_EVERY;
    private boolean enableSubscriptionStatistics = true;

    private BrokerService brokerService;
    private SystemUsage usageManager;
    private String brokerName;
    private volatile boolean deleteAllMessages;

    private volatile Store store;
    /** When set: the replication node whose store this adapter runs on. */
    private volatile Node node;
    private final WireFormats wireFormats = new WireFormats(OpenWireFormat.DEFAULT_STORE_VERSION);
    private final RsTransactionStore transactionStore = new RsTransactionStore(this);
    /** One (proxied) store per destination, as the broker requires (T20). */
    private final ConcurrentHashMap<String, MessageStore> stores = new ConcurrentHashMap<>();
    private final ConcurrentHashMap<String, RsMessageStore> rawStores = new ConcurrentHashMap<>();
    private ScheduledExecutorService scheduler;
    /** Changes written since start; timed checkpoints run only when it moved. */
    private final AtomicLong changes = new AtomicLong();
    private long changesAtCheckpoint;
    private long changesAtCleanup;
    private volatile long lastSize;

    public KahaRsPersistenceAdapter() {
    }

    // ----------------------------------------------------------------------------------------
    // Configuration

    @Override
    public void setDirectory(File dir) {
        this.directory = dir;
    }

    /** The data directory: as set, else {@code <broker data directory>/kahadb-rs}. */
    @Override
    public File getDirectory() {
        if (directory != null) {
            return directory;
        }
        if (brokerService != null) {
            return new File(brokerService.getBrokerDataDirectory(), "kahadb-rs");
        }
        return new File("activemq-data", brokerName != null ? brokerName + File.separator + "kahadb-rs" : "kahadb-rs");
    }

    @Override
    public int getJournalMaxFileLength() {
        return journalMaxFileLength;
    }

    /** Maximum length of a journal data file in bytes (default 32 MiB). */
    public void setJournalMaxFileLength(int bytes) {
        this.journalMaxFileLength = bytes;
    }

    /** Maximum size of one journal write batch in bytes (default 4 MiB, at most the file length). */
    public int getJournalMaxWriteBatchSize() {
        return journalMaxWriteBatchSize > 0 ? journalMaxWriteBatchSize
                : Math.min(JournalOptions.DEFAULT_MAX_BATCH_SIZE, journalMaxFileLength);
    }

    public void setJournalMaxWriteBatchSize(int bytes) {
        this.journalMaxWriteBatchSize = bytes;
    }

    /** {@code always} (default), {@code periodic} or {@code never}, as KahaDB's option of this name. */
    public String getJournalDiskSyncStrategy() {
        return syncStrategy.name();
    }

    public void setJournalDiskSyncStrategy(String strategy) {
        this.syncStrategy = JournalOptions.SyncStrategy.valueOf(strategy.trim().toUpperCase(Locale.ROOT));
    }

    /** Interval of the {@code periodic} strategy in milliseconds (default 1000). */
    public long getJournalDiskSyncInterval() {
        return journalDiskSyncInterval;
    }

    public void setJournalDiskSyncInterval(long millis) {
        this.journalDiskSyncInterval = millis;
    }

    /** True when the sync strategy is {@code always} (KahaDB's meaning). */
    public boolean isEnableJournalDiskSyncs() {
        return syncStrategy == JournalOptions.SyncStrategy.ALWAYS;
    }

    /** True: strategy {@code always}; false: {@code never} (as KahaDB). */
    public void setEnableJournalDiskSyncs(boolean syncs) {
        this.syncStrategy = syncs ? JournalOptions.SyncStrategy.ALWAYS : JournalOptions.SyncStrategy.NEVER;
    }

    /**
     * How new data files are allocated: {@code zeros} (default: written with zeros when created),
     * {@code sparse_file} (extended without writing) or {@code none} (grow as written). KahaDB's
     * {@code chunked_zeros} and {@code os_kernel_copy} are taken as {@code zeros}.
     */
    public String getPreallocationStrategy() {
        switch (preallocation) {
            case SPARSE:
                return "sparse_file";
            case NONE:
                return "none";
            default:
                return "zeros";
        }
    }

    public void setPreallocationStrategy(String strategy) {
        switch (strategy.trim().toLowerCase(Locale.ROOT)) {
            case "sparse_file":
            case "sparse":
                preallocation = JournalOptions.Preallocation.SPARSE;
                break;
            case "none":
                preallocation = JournalOptions.Preallocation.NONE;
                break;
            case "zeros":
            case "chunked_zeros":
            case "os_kernel_copy":
                preallocation = JournalOptions.Preallocation.ZEROS;
                break;
            default:
                throw new IllegalArgumentException("unknown preallocationStrategy: " + strategy
                        + " (zeros, sparse_file or none)");
        }
    }

    /**
     * Milliseconds between timed checkpoints of the index (default 5000; 0: none). A timed
     * checkpoint is skipped when nothing changed since the last one.
     */
    public long getCheckpointInterval() {
        return checkpointInterval;
    }

    public void setCheckpointInterval(long millis) {
        this.checkpointInterval = millis;
    }

    /**
     * Milliseconds between checkpoints that also delete the data files nothing needs any more
     * (default 30000; 0: only with the record-count checkpoints and on request).
     */
    public long getCleanupInterval() {
        return cleanupInterval;
    }

    public void setCleanupInterval(long millis) {
        this.cleanupInterval = millis;
    }

    /**
     * The native store also checkpoints (and cleans up) after this many journal commands
     * (default 100000; 0: only timed and requested checkpoints).
     */
    public long getCheckpointRecordCount() {
        return checkpointRecordCount;
    }

    public void setCheckpointRecordCount(long count) {
        this.checkpointRecordCount = count;
    }

    /**
     * Keep per-subscription statistics ({@code getMessageStoreSubStatistics()}) up to date
     * (default true; they are cheap here). The pending count of a subscription is exact either way.
     */
    public boolean isEnableSubscriptionStatistics() {
        return enableSubscriptionStatistics;
    }

    public void setEnableSubscriptionStatistics(boolean enable) {
        this.enableSubscriptionStatistics = enable;
    }

    @Override
    public void setBrokerService(BrokerService brokerService) {
        this.brokerService = brokerService;
    }

    BrokerService getBrokerService() {
        return brokerService;
    }

    @Override
    public void setUsageManager(SystemUsage usageManager) {
        this.usageManager = usageManager;
    }

    public SystemUsage getUsageManager() {
        return usageManager;
    }

    @Override
    public void setBrokerName(String brokerName) {
        this.brokerName = brokerName;
    }

    @Override
    public boolean isPersistNoLocal() {
        return wireFormats.version() >= 11;
    }

    /** Whether the next {@link #start()} deletes every stored message first. */
    public boolean isDeleteAllMessages() {
        return deleteAllMessages;
    }

    /**
     * Runs this adapter on the store of a replication node, which must be master when the broker
     * starts: synchronous writes then wait for the node's {@code minimumReplicas} slaves. The
     * node's directory and journal options apply (this adapter's are ignored); the node stays
     * open when the adapter stops. A send that times out waiting for replicas fails
     * ({@link ErrorCode#REPLICATION_TIMEOUT}) without stopping the broker.
     */
    public void setNode(Node node) {
        this.node = node;
    }

    public Node getNode() {
        return node;
    }

    /** Deletes every stored message when the adapter starts (the broker calls it before {@code start()}). */
    @Override
    public void deleteAllMessages() throws IOException {
        deleteAllMessages = true;
    }

    // ----------------------------------------------------------------------------------------
    // Life cycle

    @Override
    protected void doStart() throws Exception {
        Node n = node;
        if (n != null) {
            if (deleteAllMessages) {
                throw new IOException("deleteAllMessagesOnStartup cannot be used with a replicated store: "
                        + "a node's data is the cluster's");
            }
            LOG.info("Using the replicated kahadb-rs store of node {} in {}", n.uri(), n.directory());
            store = n.store();
            startOn(n.directory().toFile());
            return;
        }
        File dir = getDirectory();
        JournalOptions journal = new JournalOptions()
                .maxFileLength(journalMaxFileLength)
                .syncStrategy(syncStrategy)
                .syncIntervalMillis(journalDiskSyncInterval)
                .preallocation(preallocation);
        if (journalMaxWriteBatchSize > 0) {
            journal.maxBatchSize(journalMaxWriteBatchSize);
        }
        StoreOptions options = new StoreOptions()
                .journal(journal)
                .checkpointEvery(checkpointRecordCount)
                .deleteAllMessages(deleteAllMessages);
        LOG.info("Opening kahadb-rs store in {}{}", dir, deleteAllMessages ? " (deleting all messages)" : "");
        store = Store.open(dir.toPath(), options);
        deleteAllMessages = false;
        startOn(dir);
    }

    /** The rest of the start, once the store is open. */
    private void startOn(File dir) throws Exception {
        configureOpenWireVersion(dir.toPath());
        lastSize = store.diskUsage();
        changes.set(0);
        changesAtCheckpoint = 0;
        changesAtCleanup = 0;
        if (checkpointInterval > 0 || cleanupInterval > 0) {
            ScheduledThreadPoolExecutor s = new ScheduledThreadPoolExecutor(1, r -> {
                Thread t = new Thread(r, "kahadb-rs checkpoint " + dir.getName());
                t.setDaemon(true);
                return t;
            });
            s.setExecuteExistingDelayedTasksAfterShutdownPolicy(false);
            if (checkpointInterval > 0) {
                s.scheduleWithFixedDelay(() -> timedCheckpoint(false), checkpointInterval, checkpointInterval,
                        TimeUnit.MILLISECONDS);
            }
            if (cleanupInterval > 0) {
                s.scheduleWithFixedDelay(() -> timedCheckpoint(true), cleanupInterval, cleanupInterval,
                        TimeUnit.MILLISECONDS);
            }
            scheduler = s;
        }
    }

    /** Stored messages keep the OpenWire version they were written with (as KahaDB). */
    private void configureOpenWireVersion(Path dir) throws IOException {
        int configured = brokerService != null ? brokerService.getStoreOpenWireVersion()
                : OpenWireFormat.DEFAULT_STORE_VERSION;
        Path file = dir.resolve(METADATA_FILE);
        Properties props = new Properties();
        if (Files.isRegularFile(file)) {
            try (InputStream in = Files.newInputStream(file)) {
                props.load(in);
            }
        }
        String stored = props.getProperty(OPENWIRE_VERSION);
        boolean hasData = new Packed(store.destinations()).int32() > 0;
        if (stored != null && hasData) {
            int v = Integer.parseInt(stored.trim());
            if (v != configured) {
                LOG.warn("The store in {} holds messages in OpenWire version {}, the broker is configured for {}; "
                        + "using {}", dir, v, configured, v);
                if (brokerService != null) {
                    brokerService.setStoreOpenWireVersion(v);
                }
            }
            wireFormats.version(v);
            return;
        }
        wireFormats.version(configured);
        if (!Integer.toString(configured).equals(stored)) {
            props.setProperty(OPENWIRE_VERSION, Integer.toString(configured));
            Path tmp = dir.resolve(METADATA_FILE + ".tmp");
            try (OutputStream out = Files.newOutputStream(tmp)) {
                props.store(out, "kahadb-rs adapter metadata");
            }
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        }
    }

    private void timedCheckpoint(boolean cleanup) {
        Store s = store;
        if (s == null || !isStarted()) {
            return;
        }
        long now = changes.get();
        synchronized (this) {
            if (cleanup ? now == changesAtCleanup : now == changesAtCheckpoint) {
                return;
            }
            try {
                s.checkpoint(cleanup);
                changesAtCheckpoint = now;
                if (cleanup) {
                    changesAtCleanup = now;
                }
            } catch (KahaDBException e) {
                if (isStarted() && !s.isClosed()) {
                    LOG.warn("Timed checkpoint failed: {}", e.getMessage());
                }
            }
        }
    }

    @Override
    protected void doStop(ServiceStopper stopper) throws Exception {
        ScheduledExecutorService s = scheduler;
        scheduler = null;
        if (s != null) {
            s.shutdownNow();
            s.awaitTermination(30, TimeUnit.SECONDS);
        }
        Store st = store;
        if (st != null) {
            synchronized (this) {
                store = null;
                LOG.info("Closing kahadb-rs store in {}", st.directory());
                st.close();
            }
        }
        stores.clear();
        rawStores.clear();
        transactionStore.clear();
    }

    // ----------------------------------------------------------------------------------------
    // Stores

    Store store() throws IOException {
        Store s = store;
        if (s == null) {
            throw new IOException("the kahadb-rs store is not started: " + this);
        }
        return s;
    }

    WireFormats wireFormats() {
        return wireFormats;
    }

    RsTransactionStore transactions() {
        return transactionStore;
    }

    void changed() {
        changes.incrementAndGet();
    }

    /**
     * Reports a failed store call to the broker (as KahaDB does: the broker's IOException
     * handler decides whether to stop) and returns it for throwing.
     */
    IOException failure(IOException e) {
        if (e instanceof KahaDBException k
                && (k.getErrorCode() == ErrorCode.REPLICATION_TIMEOUT
                        || k.getErrorCode() == ErrorCode.ILLEGAL_STATE)) {
            // Not a store failure: too few replicas (the write is on this node's disk but not
            // acknowledged), or this node stopped being master. The send fails; the broker
            // stays up (its IOException handler would stop it).
            return e;
        }
        if (brokerService != null) {
            try {
                brokerService.handleIOException(e);
            } catch (RuntimeException ignored) {
                // the handler may throw (e.g. SuppressReplyException); ours is the one to throw
            }
        }
        return e;
    }

    static int kind(ActiveMQDestination d) {
        switch (d.getDestinationType()) {
            case ActiveMQDestination.QUEUE_TYPE:
                return Store.QUEUE;
            case ActiveMQDestination.TOPIC_TYPE:
                return Store.TOPIC;
            case ActiveMQDestination.TEMP_QUEUE_TYPE:
                return Store.TEMP_QUEUE;
            case ActiveMQDestination.TEMP_TOPIC_TYPE:
                return Store.TEMP_TOPIC;
            default:
                throw new IllegalArgumentException("unsupported destination " + d);
        }
    }

    static String key(int kind, String name) {
        return kind + ":" + name;
    }

    static ActiveMQDestination destination(int kind, String name) {
        switch (kind) {
            case Store.QUEUE:
                return new ActiveMQQueue(name);
            case Store.TOPIC:
                return new ActiveMQTopic(name);
            case Store.TEMP_QUEUE:
                return new ActiveMQTempQueue(name);
            case Store.TEMP_TOPIC:
                return new ActiveMQTempTopic(name);
            default:
                throw new IllegalArgumentException("unknown destination type " + kind);
        }
    }

    @Override
    public MessageStore createQueueMessageStore(ActiveMQQueue destination) throws IOException {
        return storeFor(destination);
    }

    @Override
    public TopicMessageStore createTopicMessageStore(ActiveMQTopic destination) throws IOException {
        return (TopicMessageStore) storeFor(destination);
    }

    /** The broker-facing (transaction-aware) store of a destination, created once. */
    MessageStore storeFor(ActiveMQDestination destination) throws IOException {
        store();
        int kind = kind(destination);
        String key = key(kind, destination.getPhysicalName());
        MessageStore s = stores.get(key);
        if (s != null) {
            return s;
        }
        synchronized (stores) {
            s = stores.get(key);
            if (s == null) {
                RsMessageStore raw = destination.isTopic() ? new RsTopicMessageStore(this, destination)
                        : new RsMessageStore(this, destination);
                rawStores.put(key, raw);
                s = raw instanceof RsTopicMessageStore ? transactionStore.proxy((RsTopicMessageStore) raw)
                        : transactionStore.proxy(raw);
                stores.put(key, s);
            }
            return s;
        }
    }

    /** The store itself (not the transaction proxy) of a destination, created if needed. */
    RsMessageStore rawStore(int kind, String name) throws IOException {
        String key = key(kind, name);
        RsMessageStore raw = rawStores.get(key);
        if (raw == null) {
            storeFor(destination(kind, name));
            raw = rawStores.get(key);
        }
        return raw;
    }

    @Override
    public void removeQueueMessageStore(ActiveMQQueue destination) {
        // The instance stays cached (as KahaDB): its state was reset by removeAllMessages.
    }

    @Override
    public void removeTopicMessageStore(ActiveMQTopic destination) {
        // As above.
    }

    @Override
    public Set<ActiveMQDestination> getDestinations() {
        Set<ActiveMQDestination> rc = new HashSet<>();
        Store s = store;
        if (s == null) {
            return rc;
        }
        try {
            Packed p = new Packed(s.destinations());
            int n = p.int32();
            for (int i = 0; i < n; i++) {
                int kind = p.int8();
                String name = p.string();
                rc.add(destination(kind, name));
            }
        } catch (IOException e) {
            throw new IllegalStateException("cannot list the stored destinations", failure(e));
        }
        // A destination with only prepared work has no stored state yet; the broker still needs it.
        rc.addAll(transactionStore.preparedDestinations());
        return rc;
    }

    @Override
    public TransactionStore createTransactionStore() throws IOException {
        return transactionStore;
    }

    @Override
    public JobSchedulerStore createJobSchedulerStore() throws IOException, UnsupportedOperationException {
        throw new UnsupportedOperationException("kahadb-rs has no job scheduler store");
    }

    @Override
    public void beginTransaction(ConnectionContext context) throws IOException {
        throw new IOException("Not yet implemented.");
    }

    @Override
    public void commitTransaction(ConnectionContext context) throws IOException {
        throw new IOException("Not yet implemented.");
    }

    @Override
    public void rollbackTransaction(ConnectionContext context) throws IOException {
        throw new IOException("Not yet implemented.");
    }

    @Override
    public long getLastMessageBrokerSequenceId() throws IOException {
        return 0;
    }

    @Override
    public long getLastProducerSequenceId(ProducerId id) throws IOException {
        try {
            return store().lastProducerSequence(id.toString());
        } catch (KahaDBException e) {
            throw failure(e);
        }
    }

    @Override
    public void checkpoint(boolean cleanup) throws IOException {
        Store s = store();
        synchronized (this) {
            try {
                long now = changes.get();
                s.checkpoint(cleanup);
                changesAtCheckpoint = now;
                if (cleanup) {
                    changesAtCleanup = now;
                }
            } catch (KahaDBException e) {
                throw failure(e);
            }
        }
    }

    /** Bytes on disk (journal and index); called by the broker on every persistent send. */
    @Override
    public long size() {
        Store s = store;
        if (s == null) {
            return lastSize;
        }
        try {
            lastSize = s.diskUsage();
        } catch (KahaDBException e) {
            // closed concurrently, or failed: the last known size will do for a usage check
        }
        return lastSize;
    }

    @Override
    public void allowIOResumption() {
        // The native store stops for good after a failed write; a restart is needed.
    }

    @Override
    public String toString() {
        return "KahaRsPersistenceAdapter[" + getDirectory() + "]";
    }
}
