package dev.kahadb;

import java.util.Objects;

/**
 * Options for {@link Store#open(java.nio.file.Path, StoreOptions)}: the journal's options plus
 * the store's own. Defaults are those of the native library.
 */
public final class StoreOptions {
    /** Default: a checkpoint after this many journal commands (and at close). */
    public static final long DEFAULT_CHECKPOINT_EVERY = 100_000;

    private JournalOptions journal = new JournalOptions();
    private long checkpointEvery = DEFAULT_CHECKPOINT_EVERY;
    private boolean deleteAllMessages;

    /** The journal's options (file length, sync strategy, ...). */
    public JournalOptions journal() {
        return journal;
    }

    public StoreOptions journal(JournalOptions value) {
        this.journal = Objects.requireNonNull(value, "journal");
        return this;
    }

    /**
     * A checkpoint of the index (and a pass of data-file cleanup) after this many journal
     * commands; 0: only on request and at close. Bounds what a restart after a crash replays.
     */
    public long checkpointEvery() {
        return checkpointEvery;
    }

    public StoreOptions checkpointEvery(long value) {
        this.checkpointEvery = value;
        return this;
    }

    /** Delete every data file and the index before opening (ActiveMQ's deleteAllMessagesOnStartup). */
    public boolean deleteAllMessages() {
        return deleteAllMessages;
    }

    public StoreOptions deleteAllMessages(boolean value) {
        this.deleteAllMessages = value;
        return this;
    }
}
