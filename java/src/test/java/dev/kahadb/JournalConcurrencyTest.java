package dev.kahadb;

import static dev.kahadb.TestData.payload;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class JournalConcurrencyTest {
    private static final int THREADS = 8;
    private static final int PER_THREAD = 500;

    @TempDir
    Path dir;

    /** The payload of thread {@code t}'s {@code i}-th record: unique, and of varying size. */
    private static byte[] recordOf(int t, int i) {
        return payload(t * 1_000_000L + i, 1 + (t * 131 + i * 17) % 3000);
    }

    @Test
    void concurrentAppendsAreAllReadBack() throws Exception {
        JournalOptions opts = new JournalOptions().maxFileLength(1024 * 1024);
        Map<Location, byte[]> written = new ConcurrentHashMap<>();
        AtomicInteger duplicates = new AtomicInteger();
        try (Journal j = Journal.open(dir, opts)) {
            ExecutorService pool = Executors.newFixedThreadPool(THREADS);
            try {
                CountDownLatch start = new CountDownLatch(1);
                List<Future<?>> futures = new ArrayList<>();
                for (int t = 0; t < THREADS; t++) {
                    final int thread = t;
                    futures.add(pool.submit(() -> {
                        start.await();
                        ByteBuffer direct = ByteBuffer.allocateDirect(4096);
                        for (int i = 0; i < PER_THREAD; i++) {
                            byte[] data = recordOf(thread, i);
                            boolean sync = i % 4 == 0;
                            Location loc;
                            if (i % 5 == 0) {
                                direct.clear();
                                direct.put(data).flip();
                                loc = j.append(direct, sync);
                            } else {
                                loc = j.append(data, sync);
                            }
                            assertEquals(data.length + Location.RECORD_HEADER_SIZE, loc.size());
                            if (written.putIfAbsent(loc, data) != null) {
                                duplicates.incrementAndGet();
                            }
                        }
                        return null;
                    }));
                }
                start.countDown();
                for (Future<?> f : futures) {
                    f.get(5, TimeUnit.MINUTES);
                }
            } finally {
                pool.shutdownNow();
            }
            assertEquals(0, duplicates.get(), "no location was handed out twice");
            assertEquals(THREADS * PER_THREAD, written.size());

            for (Map.Entry<Location, byte[]> e : written.entrySet()) {
                assertArrayEquals(e.getValue(), j.read(e.getKey()), e.getKey().toString());
            }
            int seen = 0;
            Location previous = null;
            try (JournalCursor c = j.cursor()) {
                for (JournalRecord r : c) {
                    byte[] expected = written.get(r.location());
                    assertNotNull(expected, "cursor location was returned by an append: " + r.location());
                    assertArrayEquals(expected, r.data());
                    if (previous != null) {
                        assertTrue(previous.compareTo(r.location()) < 0, "cursor order");
                    }
                    previous = r.location();
                    seen++;
                }
            }
            assertEquals(THREADS * PER_THREAD, seen);
        }

        // And the same after a reopen.
        try (Journal j = Journal.open(dir, opts); JournalCursor c = j.cursor()) {
            int seen = 0;
            for (JournalRecord r = c.nextRecord(); r != null; r = c.nextRecord()) {
                assertArrayEquals(written.get(r.location()), r.data());
                seen++;
            }
            assertEquals(THREADS * PER_THREAD, seen);
        }
    }

    /** Closing while other threads append and read never crashes; they only see CLOSED. */
    @Test
    void closeRacingWithAppendsOnlyReportsClosed() throws Exception {
        for (int round = 0; round < 20; round++) {
            Path sub = dir.resolve("round-" + round);
            Journal j = Journal.open(sub);
            Location first = j.append(payload(1, 100));
            ExecutorService pool = Executors.newFixedThreadPool(THREADS);
            List<Future<Integer>> futures = new ArrayList<>();
            CountDownLatch running = new CountDownLatch(THREADS);
            for (int t = 0; t < THREADS; t++) {
                final int thread = t;
                futures.add(pool.submit(() -> {
                    running.countDown();
                    int ok = 0;
                    for (int i = 0; ; i++) {
                        try {
                            if (i % 3 == 0) {
                                j.read(first);
                            } else {
                                j.append(recordOf(thread, i), i % 2 == 0);
                            }
                            ok++;
                        } catch (KahaDBException e) {
                            assertEquals(ErrorCode.CLOSED, e.getErrorCode(), e.getMessage());
                            return ok;
                        }
                    }
                }));
            }
            running.await();
            Thread.sleep(2 + round % 15);
            j.close();
            try {
                for (Future<Integer> f : futures) {
                    assertTrue(f.get(1, TimeUnit.MINUTES) >= 0);
                }
            } finally {
                pool.shutdownNow();
            }
            // Everything acknowledged before the close is readable after a reopen.
            try (Journal again = Journal.open(sub); JournalCursor c = again.cursor()) {
                JournalRecord r = c.nextRecord();
                assertNotNull(r);
                assertEquals(first, r.location());
            }
        }
    }

    @Test
    void cursorsMayBeSharedSafely() throws Exception {
        int total = 2000;
        try (Journal j = Journal.open(dir)) {
            for (int i = 0; i < total; i++) {
                j.append(payload(i, 64), false);
            }
            j.sync();
            Map<Location, Boolean> seen = new ConcurrentHashMap<>();
            AtomicInteger dup = new AtomicInteger();
            try (JournalCursor c = j.cursor()) {
                ExecutorService pool = Executors.newFixedThreadPool(4);
                try {
                    List<Future<?>> fs = new ArrayList<>();
                    for (int t = 0; t < 4; t++) {
                        fs.add(pool.submit(() -> {
                            for (JournalRecord r = c.nextRecord(); r != null; r = c.nextRecord()) {
                                if (seen.put(r.location(), Boolean.TRUE) != null) {
                                    dup.incrementAndGet();
                                }
                            }
                            return null;
                        }));
                    }
                    for (Future<?> f : fs) {
                        f.get(1, TimeUnit.MINUTES);
                    }
                } finally {
                    pool.shutdownNow();
                }
                assertNull(c.nextRecord());
            }
            assertEquals(0, dup.get());
            assertEquals(total, seen.size());
        }
    }
}
