package dev.kahadb;

import java.io.IOException;
import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A KahaDB-compatible journal: a directory of {@code db-N.log} data files that ActiveMQ's own
 * {@code org.apache.activemq.store.kahadb.disk.journal.Journal} can read and write too.
 *
 * <pre>{@code
 * try (Journal journal = Journal.open(dir)) {
 *     Location loc = journal.append("hello".getBytes(StandardCharsets.UTF_8));
 *     byte[] back = journal.read(loc);
 *     try (JournalCursor cursor = journal.cursor()) {
 *         for (JournalRecord r : cursor) { ... }
 *     }
 * }
 * }</pre>
 *
 * <p>A journal is thread-safe: any number of threads may append, read and sync at once, and
 * {@link #close()} may race with them (the calls then finish or fail with
 * {@link ErrorCode#CLOSED}). After {@code close()} every method but {@code close()} fails with
 * {@link ErrorCode#CLOSED}; {@code close()} itself may be called any number of times. A journal
 * that becomes unreachable without being closed is closed by a cleaner, but its directory stays
 * locked until then: close journals explicitly.
 *
 * <p>Null arguments are rejected with a {@link NullPointerException}.
 */
public final class Journal implements AutoCloseable {
    static {
        NativeLibrary.load();
    }

    private final Path directory;
    private final NativeResource resource;
    private final Cleaner.Cleanable cleanable;
    /** The native resources of this journal's open cursors. */
    private final Set<NativeResource> cursors = ConcurrentHashMap.newKeySet();

    private Journal(Path directory, long handle) {
        this.directory = directory;
        this.resource = new NativeResource(handle, Journal::close0, null);
        this.cleanable = NativeLibrary.CLEANER.register(this, new JournalCleanup(resource, cursors));
    }

    /** Opens (creating it if needed) the journal in {@code dir} with default options. */
    public static Journal open(Path dir) throws IOException {
        return open(dir, new JournalOptions());
    }

    /**
     * Opens (creating it if needed) the journal in {@code dir}.
     *
     * @throws KahaDBException with {@link ErrorCode#LOCKED} if another journal has the directory
     *     open (in this or another process), {@link ErrorCode#CONFIG} for a bad option, or the
     *     code of whatever else failed while recovering the journal
     * @throws IOException if the directory cannot be created
     */
    public static Journal open(Path dir, JournalOptions opts) throws IOException {
        Objects.requireNonNull(dir, "dir");
        Objects.requireNonNull(opts, "opts");
        Path absolute = dir.toAbsolutePath();
        Files.createDirectories(absolute);
        long handle = open0(absolute.toString(), opts.maxFileLength(), opts.maxBatchSize(),
                opts.syncStrategy().nativeValue, opts.syncIntervalMillis(), opts.preallocation().nativeValue);
        return new Journal(absolute, handle);
    }

    /** The journal's directory (absolute). */
    public Path directory() {
        return directory;
    }

    /** Whether {@link #close()} has been called. */
    public boolean isClosed() {
        return resource.isClosed();
    }

    /** Appends a record and waits until it is on disk: {@code append(data, true)}. */
    public Location append(byte[] data) throws KahaDBException {
        Objects.requireNonNull(data, "data");
        return append(data, 0, data.length, true);
    }

    /** Appends a record; with {@code sync} it is on disk when this returns. */
    public Location append(byte[] data, boolean sync) throws KahaDBException {
        Objects.requireNonNull(data, "data");
        return append(data, 0, data.length, sync);
    }

    /**
     * Appends {@code data[off, off+len)} as one record; with {@code sync} it is on disk when this
     * returns. The bytes are copied straight into the journal's write buffer.
     *
     * @throws KahaDBException {@link ErrorCode#EMPTY_RECORD} for {@code len == 0},
     *     {@link ErrorCode#RECORD_TOO_LARGE} for a record that cannot fit in a data file
     * @throws IndexOutOfBoundsException if the range is not within {@code data}
     */
    public Location append(byte[] data, int off, int len, boolean sync) throws KahaDBException {
        Objects.requireNonNull(data, "data");
        Objects.checkFromIndexSize(off, len, data.length);
        try {
            return Location.unpack(append0(resource.handle, data, off, len, sync),
                    len + Location.RECORD_HEADER_SIZE);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Appends the buffer's remaining bytes as one record and, on success, advances its position
     * to its limit. A direct buffer is read in place by the native code; a heap buffer through
     * its backing array (a read-only heap buffer is copied first). The buffer must not be
     * modified while the call runs.
     */
    public Location append(ByteBuffer buffer, boolean sync) throws KahaDBException {
        Objects.requireNonNull(buffer, "buffer");
        int pos = buffer.position();
        int len = buffer.remaining();
        Location loc;
        if (buffer.isDirect()) {
            try {
                loc = Location.unpack(appendDirect0(resource.handle, buffer, pos, len, sync),
                        len + Location.RECORD_HEADER_SIZE);
            } finally {
                Reference.reachabilityFence(this);
                Reference.reachabilityFence(buffer);
            }
        } else if (buffer.hasArray()) {
            loc = append(buffer.array(), buffer.arrayOffset() + pos, len, sync);
        } else {
            byte[] copy = new byte[len];
            buffer.duplicate().get(copy);
            loc = append(copy, 0, len, sync);
        }
        buffer.position(pos + len);
        return loc;
    }

    /**
     * Reads the payload of the record at a location returned by an append or a cursor (or by
     * ActiveMQ's journal for the same files).
     *
     * @throws KahaDBException {@link ErrorCode#INVALID_LOCATION} if no record is there
     */
    public byte[] read(Location location) throws KahaDBException {
        Objects.requireNonNull(location, "location");
        try {
            return read0(resource.handle, location.fileId(), location.offset(), location.size());
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * A cursor over every record, oldest first. Close it when done.
     *
     * <p>A cursor sees a record once the journal has written it to its data file: records
     * appended without {@code sync} may still be in the write queue; call {@link #sync()} first
     * to be sure the cursor sees everything appended so far. At the end the cursor returns no
     * record, and may be polled again for records written later.
     */
    public JournalCursor cursor() throws KahaDBException {
        try {
            return new JournalCursor(cursorOpen0(resource.handle, false, 0, 0, 0), cursors);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** A cursor over the records after {@code after}, with the visibility of {@link #cursor()}. */
    public JournalCursor cursor(Location after) throws KahaDBException {
        Objects.requireNonNull(after, "after");
        try {
            return new JournalCursor(
                    cursorOpen0(resource.handle, true, after.fileId(), after.offset(), after.size()), cursors);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** Forces everything appended so far to disk. */
    public void sync() throws KahaDBException {
        try {
            sync0(resource.handle);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Deletes the given data files (for files whose records are no longer needed).
     *
     * @throws KahaDBException {@link ErrorCode#ILLEGAL_STATE} for the file being written
     */
    public void removeDataFiles(int... fileIds) throws KahaDBException {
        Objects.requireNonNull(fileIds, "fileIds");
        try {
            removeDataFiles0(resource.handle, fileIds);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** The ids of the journal's data files. */
    public int[] dataFileIds() throws KahaDBException {
        try {
            return dataFileIds0(resource.handle);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /**
     * Closes the journal's open cursors and then the journal itself, flushing what was appended.
     * Calling it again does nothing.
     */
    @Override
    public synchronized void close() throws KahaDBException {
        if (resource.isClosed()) {
            return;
        }
        KahaDBException failure = closeCursors(cursors);
        try {
            resource.close();
        } catch (KahaDBException e) {
            if (failure != null) {
                e.addSuppressed(failure);
            }
            throw e;
        } finally {
            cleanable.clean();
        }
        if (failure != null) {
            throw failure;
        }
    }

    @Override
    public String toString() {
        return "Journal[" + directory + (isClosed() ? ", closed]" : "]");
    }

    private static KahaDBException closeCursors(Set<NativeResource> cursors) {
        KahaDBException failure = null;
        for (NativeResource cursor : cursors) {
            try {
                cursor.close();
            } catch (KahaDBException e) {
                if (failure == null) {
                    failure = e;
                } else {
                    failure.addSuppressed(e);
                }
            }
        }
        return failure;
    }

    /** The cleaner's action for a journal dropped without close(). */
    private static final class JournalCleanup implements Runnable {
        private final NativeResource journal;
        private final Set<NativeResource> cursors;

        JournalCleanup(NativeResource journal, Set<NativeResource> cursors) {
            this.journal = journal;
            this.cursors = cursors;
        }

        @Override
        public void run() {
            closeCursors(cursors);
            journal.run();
        }
    }

    private static native long open0(String dir, int maxFileLength, int maxBatchSize, int syncStrategy,
            long syncIntervalMillis, int preallocation) throws KahaDBException;

    private static native long append0(long journal, byte[] data, int off, int len, boolean sync)
            throws KahaDBException;

    private static native long appendDirect0(long journal, ByteBuffer direct, int pos, int len, boolean sync)
            throws KahaDBException;

    private static native byte[] read0(long journal, int fileId, int offset, int size) throws KahaDBException;

    private static native void sync0(long journal) throws KahaDBException;

    private static native void close0(long journal) throws KahaDBException;

    private static native void removeDataFiles0(long journal, int[] fileIds) throws KahaDBException;

    private static native int[] dataFileIds0(long journal) throws KahaDBException;

    private static native long cursorOpen0(long journal, boolean hasAfter, int fileId, int offset, int size)
            throws KahaDBException;
}
