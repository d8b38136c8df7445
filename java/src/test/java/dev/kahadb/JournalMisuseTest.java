package dev.kahadb;

import static dev.kahadb.TestData.assertCode;
import static dev.kahadb.TestData.payload;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class JournalMisuseTest {
    private static final int SMALL_FILE = 64 * 1024;

    @TempDir
    Path dir;

    @Test
    void emptyRecordsAreRefused() throws Exception {
        try (Journal j = Journal.open(dir)) {
            assertCode(ErrorCode.EMPTY_RECORD, () -> j.append(new byte[0]));
            assertCode(ErrorCode.EMPTY_RECORD, () -> j.append(new byte[10], 5, 0, false));
            assertCode(ErrorCode.EMPTY_RECORD, () -> j.append(ByteBuffer.allocate(0), true));
            assertCode(ErrorCode.EMPTY_RECORD, () -> j.append(ByteBuffer.allocateDirect(0), true));
            // The journal is still usable.
            Location l = j.append(payload(1, 10));
            assertArrayEquals(payload(1, 10), j.read(l));
        }
    }

    @Test
    void oversizedRecordsAreRefused() throws Exception {
        try (Journal j = Journal.open(dir, new JournalOptions().maxFileLength(SMALL_FILE))) {
            assertCode(ErrorCode.RECORD_TOO_LARGE, () -> j.append(new byte[SMALL_FILE + 1]));
            assertCode(ErrorCode.RECORD_TOO_LARGE, () -> j.append(new byte[SMALL_FILE], false));
            ByteBuffer big = ByteBuffer.allocateDirect(2 * SMALL_FILE);
            assertCode(ErrorCode.RECORD_TOO_LARGE, () -> j.append(big, true));
            assertEquals(0, big.position(), "a failed append leaves the buffer alone");
            Location l = j.append(payload(2, 1000));
            assertArrayEquals(payload(2, 1000), j.read(l));
        }
    }

    @Test
    void badLocationsAreRefused() throws Exception {
        try (Journal j = Journal.open(dir)) {
            Location good = j.append(payload(3, 100));
            j.append(payload(4, 100));
            assertCode(ErrorCode.INVALID_LOCATION, () -> j.read(new Location(good.fileId() + 50, 0, 105)));
            assertCode(ErrorCode.INVALID_LOCATION, () -> j.read(new Location(good.fileId(), good.offset() + 1, 105)));
            assertCode(ErrorCode.INVALID_LOCATION, () -> j.read(new Location(good.fileId(), 1 << 20, 105)));
            assertCode(ErrorCode.INVALID_LOCATION, () -> j.read(new Location(good.fileId(), good.offset(), 0)));
            assertCode(ErrorCode.INVALID_LOCATION, () -> j.read(new Location(0, good.offset(), good.size())));
            assertCode(ErrorCode.INVALID_LOCATION, () -> j.read(new Location(-1, 0, 10)));
            assertCode(ErrorCode.INVALID_LOCATION, () -> j.read(new Location(1, -7, 10)));
            assertCode(ErrorCode.INVALID_LOCATION, () -> j.cursor(new Location(1, -7, 10)));
            assertArrayEquals(payload(3, 100), j.read(good));
        }
    }

    @Test
    void callsAfterCloseReportClosed() throws Exception {
        Journal j = Journal.open(dir);
        Location l = j.append(payload(5, 10));
        JournalCursor open = j.cursor();
        j.close();
        assertTrue(j.isClosed());
        assertTrue(open.isClosed(), "closing a journal closes its cursors");

        assertCode(ErrorCode.CLOSED, () -> j.append(payload(6, 10)));
        assertCode(ErrorCode.CLOSED, () -> j.append(payload(6, 10), 0, 5, false));
        assertCode(ErrorCode.CLOSED, () -> j.append(ByteBuffer.allocateDirect(8), true));
        assertCode(ErrorCode.CLOSED, () -> j.append(ByteBuffer.allocate(8), true));
        assertCode(ErrorCode.CLOSED, () -> j.read(l));
        assertCode(ErrorCode.CLOSED, j::sync);
        assertCode(ErrorCode.CLOSED, j::cursor);
        assertCode(ErrorCode.CLOSED, () -> j.cursor(l));
        assertCode(ErrorCode.CLOSED, () -> j.removeDataFiles(1));
        assertCode(ErrorCode.CLOSED, j::dataFileIds);
        assertCode(ErrorCode.CLOSED, open::nextRecord);
        UncheckedIOException u = assertThrows(UncheckedIOException.class, open::hasNext);
        assertEquals(ErrorCode.CLOSED, assertInstanceOf(KahaDBException.class, u.getCause()).getErrorCode());

        j.close();
        j.close();
        open.close();
        open.close();
    }

    @Test
    void closedCursorReportsClosedButJournalGoesOn() throws Exception {
        try (Journal j = Journal.open(dir)) {
            j.append(payload(1, 10));
            JournalCursor c = j.cursor();
            c.close();
            c.close();
            assertCode(ErrorCode.CLOSED, c::nextRecord);
            try (JournalCursor again = j.cursor()) {
                assertEquals(1, again.nextRecord().location().fileId());
            }
        }
    }

    @Test
    void secondOpenOfADirectoryIsLocked() throws Exception {
        try (Journal first = Journal.open(dir)) {
            first.append(payload(1, 10));
            assertCode(ErrorCode.LOCKED, () -> Journal.open(dir));
            assertCode(ErrorCode.LOCKED, () -> Journal.open(dir.resolve(".").normalize()));
        }
        try (Journal again = Journal.open(dir)) {
            assertEquals(1, again.dataFileIds().length);
        }
    }

    /** A journal dropped without close() is closed by the cleaner, which unlocks its directory. */
    @Test
    void droppedJournalsAreCleanedUp() throws Exception {
        openAndDrop(dir);
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (true) {
            System.gc();
            try (Journal again = Journal.open(dir)) {
                assertEquals(1, again.cursor().nextRecord().location().fileId());
                break;
            } catch (KahaDBException e) {
                assertEquals(ErrorCode.LOCKED, e.getErrorCode(), e.getMessage());
                assertTrue(System.nanoTime() < deadline, "the dropped journal was never cleaned up");
                Thread.sleep(50);
            }
        }
    }

    private static void openAndDrop(Path dir) throws Exception {
        Journal j = Journal.open(dir);
        j.append(payload(1, 10));
        j.cursor(); // dropped too
    }

    @Test
    void badOptionsAreConfigErrors() {
        assertCode(ErrorCode.CONFIG, () -> Journal.open(dir, new JournalOptions().maxFileLength(0)));
        assertCode(ErrorCode.CONFIG, () -> Journal.open(dir, new JournalOptions().maxFileLength(-1)));
        assertCode(ErrorCode.CONFIG, () -> Journal.open(dir, new JournalOptions().maxFileLength(100)));
        assertCode(ErrorCode.CONFIG, () -> Journal.open(dir, new JournalOptions().maxBatchSize(0)));
        assertCode(ErrorCode.CONFIG, () -> Journal.open(dir,
                new JournalOptions().maxFileLength(SMALL_FILE).maxBatchSize(SMALL_FILE * 2)));
        assertCode(ErrorCode.CONFIG, () -> Journal.open(dir,
                new JournalOptions().syncStrategy(JournalOptions.SyncStrategy.PERIODIC).syncIntervalMillis(0)));
        assertCode(ErrorCode.CONFIG, () -> Journal.open(dir,
                new JournalOptions().syncStrategy(JournalOptions.SyncStrategy.PERIODIC).syncIntervalMillis(-5)));
    }

    /** Null arguments are NullPointerExceptions, everywhere (see the package documentation). */
    @Test
    void nullArgumentsAreNullPointerExceptions() throws Exception {
        assertThrows(NullPointerException.class, () -> Journal.open(null));
        assertThrows(NullPointerException.class, () -> Journal.open(dir, null));
        assertThrows(NullPointerException.class, () -> new JournalOptions().syncStrategy(null));
        assertThrows(NullPointerException.class, () -> new JournalOptions().preallocation(null));
        try (Journal j = Journal.open(dir)) {
            assertThrows(NullPointerException.class, () -> j.append((byte[]) null));
            assertThrows(NullPointerException.class, () -> j.append((byte[]) null, true));
            assertThrows(NullPointerException.class, () -> j.append(null, 0, 0, true));
            assertThrows(NullPointerException.class, () -> j.append((ByteBuffer) null, true));
            assertThrows(NullPointerException.class, () -> j.read(null));
            assertThrows(NullPointerException.class, () -> j.cursor(null));
            assertThrows(NullPointerException.class, () -> j.removeDataFiles((int[]) null));
        }
    }

    @Test
    void outOfRangeSlicesAreIndexErrors() throws Exception {
        try (Journal j = Journal.open(dir)) {
            byte[] data = new byte[10];
            assertThrows(IndexOutOfBoundsException.class, () -> j.append(data, -1, 5, true));
            assertThrows(IndexOutOfBoundsException.class, () -> j.append(data, 0, 11, true));
            assertThrows(IndexOutOfBoundsException.class, () -> j.append(data, 8, 3, true));
            assertThrows(IndexOutOfBoundsException.class, () -> j.append(data, 5, -1, true));
            assertThrows(IndexOutOfBoundsException.class, () -> j.append(data, Integer.MAX_VALUE, 2, true));
        }
    }

    @Test
    void removingUnknownFilesIsNotFound() throws Exception {
        try (Journal j = Journal.open(dir, new JournalOptions().maxFileLength(SMALL_FILE))) {
            while (j.dataFileIds().length < 3) {
                j.append(payload(1, 4000), false);
            }
            int oldest = j.dataFileIds()[0];
            j.removeDataFiles(oldest);
            assertCode(ErrorCode.NOT_FOUND, () -> j.removeDataFiles(oldest));
            assertCode(ErrorCode.NOT_FOUND, () -> j.removeDataFiles(-3));
        }
    }

    @Test
    void errorCodesMirrorTheNativeTable() {
        assertEquals(18, ErrorCode.values().length);
        for (ErrorCode c : ErrorCode.values()) {
            assertEquals(c, ErrorCode.fromCode(c.code()));
        }
        assertEquals(null, ErrorCode.fromCode(2));
        assertEquals(null, ErrorCode.fromCode(-17));
        assertEquals(-16, ErrorCode.REPLICATION_TIMEOUT.code());
        assertEquals(-13, ErrorCode.INTERNAL.code());
        assertEquals(-15, ErrorCode.ILLEGAL_STATE.code());
        KahaDBException e = new KahaDBException(-10, "dir is locked");
        assertEquals(ErrorCode.LOCKED, e.getErrorCode());
        assertEquals("dir is locked (LOCKED)", e.getMessage());
        assertEquals(ErrorCode.INTERNAL, new KahaDBException(99, "x").getErrorCode());
    }
}
