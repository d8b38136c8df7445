package dev.kahadb;

import java.io.UncheckedIOException;
import java.lang.ref.Cleaner;
import java.lang.ref.Reference;
import java.util.Iterator;
import java.util.NoSuchElementException;
import java.util.Set;

/**
 * Forward iteration over a journal's records, oldest first, from {@link Journal#cursor()}.
 *
 * <p>Use {@link #nextRecord()} (which returns {@code null} at the end), or iterate: a cursor is
 * its own single-use {@link Iterator} and {@link Iterable}, so
 * {@code for (JournalRecord r : cursor)} works; there a native failure surfaces as an
 * {@link UncheckedIOException} wrapping the {@link KahaDBException}.
 *
 * <p>Close the cursor when done (closing the journal closes its cursors too); after
 * {@link #close()} further calls fail with {@link ErrorCode#CLOSED}. A cursor is meant for one
 * thread at a time; its methods are synchronized so sharing one is safe, but serial.
 */
public final class JournalCursor implements AutoCloseable, Iterable<JournalRecord>, Iterator<JournalRecord> {
    static {
        NativeLibrary.load();
    }

    private final NativeResource resource;
    private final Cleaner.Cleanable cleanable;
    /** Filled by the native code: packed location and size of the record returned. */
    private final long[] locationOut = new long[2];
    /** A record fetched by {@link #hasNext()} and not yet returned. */
    private JournalRecord peeked;

    JournalCursor(long handle, Set<NativeResource> journalCursors) {
        this.resource = new NativeResource(handle, JournalCursor::close0, journalCursors);
        this.cleanable = NativeLibrary.CLEANER.register(this, resource);
    }

    /**
     * The next record, or {@code null} if there is none (yet: records appended later are seen
     * by later calls).
     */
    public synchronized JournalRecord nextRecord() throws KahaDBException {
        JournalRecord r = peeked;
        if (r != null) {
            peeked = null;
            return r;
        }
        try {
            byte[] data = next0(resource.handle, locationOut);
            if (data == null) {
                return null;
            }
            return new JournalRecord(Location.unpack(locationOut[0], (int) locationOut[1]), data);
        } finally {
            Reference.reachabilityFence(this);
        }
    }

    /** {@inheritDoc} A native failure is thrown as an {@link UncheckedIOException}. */
    @Override
    public synchronized boolean hasNext() {
        if (peeked == null) {
            try {
                peeked = nextRecord();
            } catch (KahaDBException e) {
                throw new UncheckedIOException(e);
            }
        }
        return peeked != null;
    }

    /** {@inheritDoc} A native failure is thrown as an {@link UncheckedIOException}. */
    @Override
    public synchronized JournalRecord next() {
        if (!hasNext()) {
            throw new NoSuchElementException();
        }
        JournalRecord r = peeked;
        peeked = null;
        return r;
    }

    /** This cursor itself: iterating consumes it. */
    @Override
    public Iterator<JournalRecord> iterator() {
        return this;
    }

    /** Whether {@link #close()} has been called (or the journal was closed). */
    public boolean isClosed() {
        return resource.isClosed();
    }

    /** Releases the cursor; calling it again does nothing. */
    @Override
    public void close() throws KahaDBException {
        try {
            resource.close();
        } finally {
            cleanable.clean();
        }
    }

    private static native byte[] next0(long cursor, long[] locationOut) throws KahaDBException;

    private static native void close0(long cursor) throws KahaDBException;
}
