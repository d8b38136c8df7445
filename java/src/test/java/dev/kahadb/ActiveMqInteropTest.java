package dev.kahadb;

import static dev.kahadb.TestData.payload;
import static dev.kahadb.TestData.varyingSize;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.apache.activemq.store.kahadb.disk.journal.DataFile;
import org.apache.activemq.util.ByteSequence;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Both directions of compatibility with ActiveMQ's own journal
 * ({@code org.apache.activemq.store.kahadb.disk.journal.Journal}, as used by KahaDB with
 * {@code checksumJournalFiles=true}).
 */
class ActiveMqInteropTest {
    private static final int SMALL_FILE = 64 * 1024;
    private static final int RECORDS = 600;
    private static final int MAX_RECORD = 3000;

    @TempDir
    Path dir;

    private static byte[] recordOf(int i) {
        return payload(i, varyingSize(i, MAX_RECORD));
    }

    private static org.apache.activemq.store.kahadb.disk.journal.Journal activeMq(Path dir, boolean checkCorruption)
            throws IOException {
        org.apache.activemq.store.kahadb.disk.journal.Journal j = new org.apache.activemq.store.kahadb.disk.journal.Journal();
        j.setDirectory(dir.toFile());
        j.setMaxFileLength(SMALL_FILE);
        j.setChecksum(true);
        j.setCheckForCorruptionOnStartup(checkCorruption);
        j.start();
        return j;
    }

    private static Location ours(org.apache.activemq.store.kahadb.disk.journal.Location l) {
        return new Location(l.getDataFileId(), l.getOffset(), l.getSize());
    }

    private static byte[] bytes(ByteSequence bs) {
        return Arrays.copyOfRange(bs.getData(), bs.getOffset(), bs.getOffset() + bs.getLength());
    }

    /** (a) A journal written by ActiveMQ, across rotations, is read by kahadb-rs. */
    @Test
    void readsAJournalWrittenByActiveMq() throws Exception {
        List<Location> amqLocations = new ArrayList<>();
        org.apache.activemq.store.kahadb.disk.journal.Journal amq = activeMq(dir, false);
        try {
            for (int i = 0; i < RECORDS; i++) {
                org.apache.activemq.store.kahadb.disk.journal.Location l = amq.write(new ByteSequence(recordOf(i)), i % 3 == 0);
                amqLocations.add(ours(l));
            }
        } finally {
            amq.close();
        }
        long files = amqLocations.stream().map(Location::fileId).distinct().count();
        assertTrue(files >= 5, "ActiveMQ rotated across several files: " + files);

        try (Journal j = Journal.open(dir, new JournalOptions().maxFileLength(SMALL_FILE))) {
            int n = 0;
            try (JournalCursor c = j.cursor()) {
                for (JournalRecord r : c) {
                    assertEquals(amqLocations.get(n), r.location(), "record " + n);
                    assertArrayEquals(recordOf(n), r.data(), "record " + n);
                    n++;
                }
            }
            assertEquals(RECORDS, n);
            for (int i = 0; i < RECORDS; i++) {
                assertArrayEquals(recordOf(i), j.read(amqLocations.get(i)), "read " + amqLocations.get(i));
            }

            // kahadb-rs goes on appending to ActiveMQ's journal ...
            for (int i = RECORDS; i < RECORDS + 100; i++) {
                Location l = j.append(recordOf(i), i % 2 == 0);
                assertTrue(l.compareTo(amqLocations.get(amqLocations.size() - 1)) > 0);
                amqLocations.add(l);
            }
        }

        // ... and ActiveMQ reads the whole mixed journal back.
        amq = activeMq(dir, true);
        try {
            assertReadsEverything(amq, amqLocations);
        } finally {
            amq.close();
        }
    }

    /** The default kahadb-rs file length (32 MiB) reads ActiveMQ's small files as well. */
    @Test
    void readsActiveMqFilesWithDefaultOptions() throws Exception {
        List<Location> amqLocations = new ArrayList<>();
        org.apache.activemq.store.kahadb.disk.journal.Journal amq = activeMq(dir, false);
        try {
            for (int i = 0; i < 200; i++) {
                amqLocations.add(ours(amq.write(new ByteSequence(recordOf(i)), false)));
            }
        } finally {
            amq.close();
        }
        try (Journal j = Journal.open(dir); JournalCursor c = j.cursor()) {
            for (int i = 0; i < amqLocations.size(); i++) {
                JournalRecord r = c.nextRecord();
                assertNotNull(r, "record " + i);
                assertEquals(amqLocations.get(i), r.location());
                assertArrayEquals(recordOf(i), r.data());
            }
            assertNull(c.nextRecord());
        }
    }

    /** (b) A journal written by kahadb-rs, across rotations, is read by ActiveMQ. */
    @ParameterizedTest(name = "checkForCorruptionOnStartup={0}")
    @ValueSource(booleans = {false, true})
    void activeMqReadsAJournalWrittenByKahadb(boolean checkForCorruption) throws Exception {
        List<Location> locations = new ArrayList<>();
        try (Journal j = Journal.open(dir, new JournalOptions().maxFileLength(SMALL_FILE))) {
            for (int i = 0; i < RECORDS; i++) {
                locations.add(j.append(recordOf(i), i % 3 == 0));
            }
            assertTrue(j.dataFileIds().length >= 5, "kahadb-rs rotated: " + Arrays.toString(j.dataFileIds()));
        }

        org.apache.activemq.store.kahadb.disk.journal.Journal amq = activeMq(dir, checkForCorruption);
        try {
            for (DataFile f : amq.getFileMap().values()) {
                assertTrue(f.getCorruptedBlocks().isEmpty(), "ActiveMQ found corruption in " + f);
            }
            assertReadsEverything(amq, locations);

            // Each location kahadb-rs returned reads back through ActiveMQ's read(), with the size
            // taken from the file and with the size given.
            for (int i = 0; i < locations.size(); i++) {
                Location l = locations.get(i);
                org.apache.activemq.store.kahadb.disk.journal.Location probe =
                        new org.apache.activemq.store.kahadb.disk.journal.Location(l.fileId(), l.offset());
                assertArrayEquals(recordOf(i), bytes(amq.read(probe)), "ActiveMQ read of " + l);
                assertEquals(l.size(), probe.getSize());
                org.apache.activemq.store.kahadb.disk.journal.Location sized =
                        new org.apache.activemq.store.kahadb.disk.journal.Location(l.fileId(), l.offset());
                sized.setSize(l.size());
                assertArrayEquals(recordOf(i), bytes(amq.read(sized)), "ActiveMQ sized read of " + l);
            }

            // ActiveMQ appends after kahadb-rs's records ...
            for (int i = RECORDS; i < RECORDS + 50; i++) {
                locations.add(ours(amq.write(new ByteSequence(recordOf(i)), true)));
            }
        } finally {
            amq.close();
        }

        // ... and kahadb-rs reads the mixed journal back.
        try (Journal j = Journal.open(dir, new JournalOptions().maxFileLength(SMALL_FILE));
                JournalCursor c = j.cursor()) {
            for (int i = 0; i < locations.size(); i++) {
                JournalRecord r = c.nextRecord();
                assertNotNull(r, "record " + i);
                assertEquals(locations.get(i), r.location());
                assertArrayEquals(recordOf(i), r.data());
            }
            assertNull(c.nextRecord());
        }
    }

    /** Reads every user record with getNextLocation/read and compares it with what was written. */
    private static void assertReadsEverything(org.apache.activemq.store.kahadb.disk.journal.Journal amq,
            List<Location> expected) throws IOException {
        int n = 0;
        org.apache.activemq.store.kahadb.disk.journal.Location l = amq.getNextLocation(null);
        while (l != null) {
            assertTrue(n < expected.size(), "more records than written, at " + l);
            assertEquals(expected.get(n), ours(l), "location of record " + n);
            assertArrayEquals(recordOf(n), bytes(amq.read(l)), "record " + n);
            n++;
            l = amq.getNextLocation(l);
        }
        assertEquals(expected.size(), n, "ActiveMQ saw every record");
    }
}
