package dev.kahadb;

import static dev.kahadb.TestData.payload;
import static dev.kahadb.TestData.varyingSize;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class JournalTest {
    private static final int SMALL_FILE = 64 * 1024;

    @TempDir
    Path dir;

    @Test
    void appendsSyncAndAsyncAndReadsBack() throws Exception {
        try (Journal j = Journal.open(dir)) {
            List<Location> locs = new ArrayList<>();
            for (int i = 0; i < 50; i++) {
                byte[] data = payload(i, varyingSize(i, 3000));
                Location loc = j.append(data, i % 2 == 0);
                assertEquals(data.length + Location.RECORD_HEADER_SIZE, loc.size());
                assertEquals(data.length, loc.payloadLength());
                locs.add(loc);
            }
            // Unsynced records read back before and after a sync.
            for (int i = 0; i < locs.size(); i++) {
                assertArrayEquals(payload(i, varyingSize(i, 3000)), j.read(locs.get(i)), "record " + i);
            }
            j.sync();
            for (int i = 0; i < locs.size(); i++) {
                assertArrayEquals(payload(i, varyingSize(i, 3000)), j.read(locs.get(i)), "record " + i);
            }
            List<Location> sorted = new ArrayList<>(locs);
            sorted.sort(null);
            assertEquals(locs, sorted, "locations grow in append order");
        }
        assertTrue(Files.exists(dir.resolve("db-1.log")), "KahaDB file naming");
    }

    @Test
    void appendWithDefaultSyncAndSlices() throws Exception {
        try (Journal j = Journal.open(dir)) {
            byte[] all = payload(1, 100);
            Location whole = j.append(all);
            Location slice = j.append(all, 10, 20, true);
            assertArrayEquals(all, j.read(whole));
            assertArrayEquals(Arrays.copyOfRange(all, 10, 30), j.read(slice));
            assertEquals(25, slice.size());
        }
    }

    @Test
    void cursorYieldsEverythingInOrder() throws Exception {
        try (Journal j = Journal.open(dir)) {
            List<Location> locs = new ArrayList<>();
            for (int i = 0; i < 200; i++) {
                locs.add(j.append(payload(i, varyingSize(i, 500)), false));
            }
            j.sync(); // cursors see written records; unsynced ones may still be queued
            int n = 0;
            try (JournalCursor c = j.cursor()) {
                for (JournalRecord r : c) {
                    assertEquals(locs.get(n), r.location());
                    assertArrayEquals(payload(n, varyingSize(n, 500)), r.data());
                    n++;
                }
                assertNull(c.nextRecord(), "the end stays the end");
            }
            assertEquals(locs.size(), n);

            // A cursor after a location starts with the next record.
            try (JournalCursor c = j.cursor(locs.get(149))) {
                JournalRecord first = c.nextRecord();
                assertNotNull(first);
                assertEquals(locs.get(150), first.location());
                int rest = 1;
                while (c.nextRecord() != null) {
                    rest++;
                }
                assertEquals(50, rest);
            }

            // A cursor at the end sees records appended later.
            try (JournalCursor c = j.cursor(locs.get(locs.size() - 1))) {
                assertFalse(c.hasNext());
                Location more = j.append(payload(1000, 10), true);
                JournalRecord r = c.nextRecord();
                assertNotNull(r);
                assertEquals(more, r.location());
            }
        }
    }

    @Test
    void appendsFromByteBuffers() throws Exception {
        try (Journal j = Journal.open(dir)) {
            byte[] data = payload(7, 1000);

            ByteBuffer direct = ByteBuffer.allocateDirect(1200);
            direct.position(100);
            direct.put(data);
            direct.flip();
            direct.position(100);
            Location d = j.append(direct, true);
            assertEquals(direct.limit(), direct.position(), "position advanced to the limit");
            assertArrayEquals(data, j.read(d));

            ByteBuffer heap = ByteBuffer.wrap(payload(8, 1500)).position(200).slice();
            heap.limit(1000);
            Location h = j.append(heap, false);
            assertFalse(heap.hasRemaining());
            assertArrayEquals(Arrays.copyOfRange(payload(8, 1500), 200, 1200), j.read(h));

            ByteBuffer readOnly = ByteBuffer.wrap(data).asReadOnlyBuffer();
            Location r = j.append(readOnly, false);
            assertFalse(readOnly.hasRemaining());
            assertArrayEquals(data, j.read(r));

            ByteBuffer directReadOnly = ByteBuffer.allocateDirect(data.length).put(data).flip().asReadOnlyBuffer();
            Location dr = j.append(directReadOnly, true);
            assertArrayEquals(data, j.read(dr));
        }
    }

    @Test
    void reopensAndReadsAgain() throws Exception {
        List<Location> locs = new ArrayList<>();
        try (Journal j = Journal.open(dir)) {
            for (int i = 0; i < 100; i++) {
                locs.add(j.append(payload(i, varyingSize(i, 4000)), i % 10 == 0));
            }
        }
        try (Journal j = Journal.open(dir)) {
            for (int i = 0; i < locs.size(); i++) {
                assertArrayEquals(payload(i, varyingSize(i, 4000)), j.read(locs.get(i)));
            }
            List<Location> seen = new ArrayList<>();
            try (JournalCursor c = j.cursor()) {
                c.forEachRemaining(r -> seen.add(r.location()));
            }
            assertEquals(locs, seen);
            // Appends continue after the recovered end.
            Location next = j.append(payload(5000, 10));
            assertTrue(next.compareTo(locs.get(locs.size() - 1)) > 0);
        }
    }

    @Test
    void rotatesAcrossSmallFilesAndRemovesOldOnes() throws Exception {
        JournalOptions opts = new JournalOptions().maxFileLength(SMALL_FILE);
        List<Location> locs = new ArrayList<>();
        int count = 400;
        try (Journal j = Journal.open(dir, opts)) {
            for (int i = 0; i < count; i++) {
                Location loc = j.append(payload(i, varyingSize(i, 2048)), i % 50 == 0);
                assertTrue(loc.offset() + loc.size() <= SMALL_FILE, "record inside its file: " + loc);
                locs.add(loc);
            }
            j.sync();
            int[] ids = j.dataFileIds();
            assertTrue(ids.length >= 5, "several files: " + Arrays.toString(ids));
            assertEquals(Arrays.stream(ids).boxed().collect(Collectors.toList()),
                    locs.stream().map(Location::fileId).distinct().collect(Collectors.toList()));
        }
        for (int id : new int[] {1, 2, 3}) {
            assertTrue(Files.size(dir.resolve("db-" + id + ".log")) <= SMALL_FILE);
        }

        try (Journal j = Journal.open(dir, opts)) {
            int n = 0;
            try (JournalCursor c = j.cursor()) {
                for (JournalRecord r : c) {
                    assertEquals(locs.get(n), r.location());
                    assertArrayEquals(payload(n, varyingSize(n, 2048)), r.data());
                    n++;
                }
            }
            assertEquals(count, n);

            int[] before = j.dataFileIds();
            int first = before[0];
            j.removeDataFiles(first);
            assertFalse(Files.exists(dir.resolve("db-" + first + ".log")));
            assertFalse(Arrays.stream(j.dataFileIds()).anyMatch(id -> id == first));

            Location gone = locs.get(0);
            assertEquals(first, gone.fileId());
            KahaDBException e = TestData.assertCode(ErrorCode.NOT_FOUND, () -> j.read(gone));
            assertTrue(e.getMessage().contains("removed"), e.getMessage());

            List<Location> remaining = locs.stream().filter(l -> l.fileId() != first).collect(Collectors.toList());
            List<Location> seen = new ArrayList<>();
            try (JournalCursor c = j.cursor()) {
                c.forEachRemaining(r -> seen.add(r.location()));
            }
            assertEquals(remaining, seen);

            int active = before[before.length - 1];
            TestData.assertCode(ErrorCode.ILLEGAL_STATE, () -> j.removeDataFiles(active));
        }
    }

    @Test
    void optionsAreAccepted() throws Exception {
        for (JournalOptions.SyncStrategy s : JournalOptions.SyncStrategy.values()) {
            for (JournalOptions.Preallocation p : JournalOptions.Preallocation.values()) {
                Path sub = dir.resolve(s + "-" + p);
                JournalOptions opts = new JournalOptions().maxFileLength(SMALL_FILE).maxBatchSize(16 * 1024)
                        .syncStrategy(s).syncIntervalMillis(10).preallocation(p);
                List<Location> locs = new ArrayList<>();
                try (Journal j = Journal.open(sub, opts)) {
                    for (int i = 0; i < 100; i++) {
                        locs.add(j.append(payload(i, 1000), i % 7 == 0));
                    }
                }
                try (Journal j = Journal.open(sub, opts)) {
                    for (int i = 0; i < locs.size(); i++) {
                        assertArrayEquals(payload(i, 1000), j.read(locs.get(i)), opts.toString());
                    }
                }
            }
        }
    }

    @Test
    void versionIsReported() {
        String v = Kahadb.version();
        assertTrue(v.matches("\\d+\\.\\d+\\.\\d+.*"), v);
    }
}
