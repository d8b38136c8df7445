package dev.kahadb;

import java.time.Duration;
import java.util.Objects;

/**
 * Options for {@link Journal#open(java.nio.file.Path, JournalOptions)}, set fluently:
 *
 * <pre>{@code
 * JournalOptions opts = new JournalOptions()
 *         .maxFileLength(64 * 1024 * 1024)
 *         .syncStrategy(JournalOptions.SyncStrategy.PERIODIC)
 *         .syncIntervalMillis(100);
 * }</pre>
 *
 * <p>The defaults are those of the native library (and of ActiveMQ KahaDB). Setters do not
 * validate numbers: {@link Journal#open(java.nio.file.Path, JournalOptions) open} rejects a bad
 * value with a {@link KahaDBException} of code {@link ErrorCode#CONFIG}. Null enum values are
 * rejected at once with a {@link NullPointerException}.
 */
public final class JournalOptions {
    /** Default maximum length of a data file: 32 MiB. */
    public static final int DEFAULT_MAX_FILE_LENGTH = 32 * 1024 * 1024;
    /** Default maximum size of a write batch: 4 MiB. */
    public static final int DEFAULT_MAX_BATCH_SIZE = 4 * 1024 * 1024;
    /** Default interval of the {@link SyncStrategy#PERIODIC} strategy: 1 second. */
    public static final long DEFAULT_SYNC_INTERVAL_MILLIS = 1000;

    /** When appended data is forced to disk. */
    public enum SyncStrategy {
        /** Every append asked to be synced is on disk when the append returns (the default). */
        ALWAYS(0),
        /** Data is forced to disk at most every {@link #syncIntervalMillis(long) interval}. */
        PERIODIC(1),
        /** Data is forced to disk only by {@link Journal#sync()} and on close. */
        NEVER(2);

        final int nativeValue;

        SyncStrategy(int nativeValue) {
            this.nativeValue = nativeValue;
        }
    }

    /** How a new data file is allocated on disk. */
    public enum Preallocation {
        /** The whole file is written with zeros when created (the default, as in KahaDB). */
        ZEROS(0),
        /** The file is extended to its full length without writing (sparse). */
        SPARSE(1),
        /** The file grows as records are appended. */
        NONE(2);

        final int nativeValue;

        Preallocation(int nativeValue) {
            this.nativeValue = nativeValue;
        }
    }

    private int maxFileLength = DEFAULT_MAX_FILE_LENGTH;
    private int maxBatchSize = DEFAULT_MAX_BATCH_SIZE;
    private boolean maxBatchSizeSet;
    private SyncStrategy syncStrategy = SyncStrategy.ALWAYS;
    private long syncIntervalMillis = DEFAULT_SYNC_INTERVAL_MILLIS;
    private Preallocation preallocation = Preallocation.ZEROS;

    /** Options with every value at its default. */
    public JournalOptions() {
    }

    /** Maximum length of a data file in bytes; the journal rotates to a new file beyond it. */
    public JournalOptions maxFileLength(int bytes) {
        this.maxFileLength = bytes;
        return this;
    }

    /**
     * Maximum size of one write batch in bytes; it may not exceed the maximum file length. If it
     * is not set, it is {@value #DEFAULT_MAX_BATCH_SIZE} or the maximum file length if that is
     * smaller (as ActiveMQ does).
     */
    public JournalOptions maxBatchSize(int bytes) {
        this.maxBatchSize = bytes;
        this.maxBatchSizeSet = true;
        return this;
    }

    /** When appended data is forced to disk. */
    public JournalOptions syncStrategy(SyncStrategy strategy) {
        this.syncStrategy = Objects.requireNonNull(strategy, "strategy");
        return this;
    }

    /** The interval of the {@link SyncStrategy#PERIODIC} strategy, in milliseconds. */
    public JournalOptions syncIntervalMillis(long millis) {
        this.syncIntervalMillis = millis;
        return this;
    }

    /** The interval of the {@link SyncStrategy#PERIODIC} strategy. */
    public JournalOptions syncInterval(Duration interval) {
        return syncIntervalMillis(Objects.requireNonNull(interval, "interval").toMillis());
    }

    /** How new data files are allocated. */
    public JournalOptions preallocation(Preallocation preallocation) {
        this.preallocation = Objects.requireNonNull(preallocation, "preallocation");
        return this;
    }

    public int maxFileLength() {
        return maxFileLength;
    }

    /** The maximum batch size in effect: the one set, or the default for the file length. */
    public int maxBatchSize() {
        if (maxBatchSizeSet) {
            return maxBatchSize;
        }
        return maxFileLength > 0 ? Math.min(DEFAULT_MAX_BATCH_SIZE, maxFileLength) : DEFAULT_MAX_BATCH_SIZE;
    }

    public SyncStrategy syncStrategy() {
        return syncStrategy;
    }

    public long syncIntervalMillis() {
        return syncIntervalMillis;
    }

    public Preallocation preallocation() {
        return preallocation;
    }

    @Override
    public String toString() {
        return "JournalOptions[maxFileLength=" + maxFileLength + ", maxBatchSize=" + maxBatchSize()
                + ", syncStrategy=" + syncStrategy + ", syncIntervalMillis=" + syncIntervalMillis
                + ", preallocation=" + preallocation + "]";
    }
}
