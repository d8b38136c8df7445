package dev.kahadb.bench;

import dev.kahadb.Journal;
import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.activemq.util.ByteSequence;

/**
 * Append benchmark of kahadb-rs against ActiveMQ's own journal.
 *
 * <pre>
 * JournalBench --impl kahadb|activemq --case sync1|sync8|async1 --records N [--size 1024] --dir D [--warmup W]
 * </pre>
 *
 * <ul>
 *   <li>{@code sync1}: one thread appends with sync; {@code sync8}: eight threads append with
 *       sync (the records are split evenly); {@code async1}: one thread appends without sync,
 *       then syncs and closes, and that final sync/close is part of the measured time.
 *   <li>A warm-up of W appends (default: a tenth of N, at most 1000) in the same mode runs first
 *       and is not measured. Each record is a fresh {@code --size}-byte array.
 *   <li>kahadb-rs runs with its defaults. ActiveMQ's journal runs with its defaults (32 MiB
 *       files, 4 MiB write batches) except the directory and {@code setChecksum(true)}, as KahaDB
 *       configures it by default ({@code checksumJournalFiles=true}). ActiveMQ has no sync call,
 *       so its async run ends with {@code close()} (which waits for every write) followed by an
 *       fsync of every data file, for the same durability as kahadb-rs's {@code sync()}.
 *   <li>{@code D} must be missing or empty.
 * </ul>
 *
 * <p>Prints exactly one JSON line on stdout, for example
 * {@code {"impl":"kahadb","case":"sync8","ops_per_sec":12345.6,"p50_us":512.3,"p99_us":2048.0,"records":20000}}.
 * {@code ops_per_sec} is measured appends over the measured wall time; {@code p50_us} and
 * {@code p99_us} are per-append latency percentiles in microseconds for the sync cases and
 * {@code null} for {@code async1}. Everything else (logging) goes to stderr.
 *
 * <p>Running it from the repository root, after {@code mvn verify} (or {@code test-compile}) of
 * the Java project:
 *
 * <pre>
 * mvn -q -f java/pom.xml dependency:build-classpath -Dmdep.outputFile=target/bench.classpath -Dmdep.includeScope=test
 * java -cp java/target/classes:java/target/test-classes:$(cat java/target/bench.classpath) \
 *     dev.kahadb.bench.JournalBench --impl kahadb --case sync8 --records 20000 --size 1024 --dir "$BENCH_DIR/kahadb-sync8"
 * </pre>
 *
 * <p>({@code -Dmdep.outputFile} is relative to the Java project, so the file lands in
 * {@code java/target/}.) The native library is loaded from {@code java/target/classes} as in the
 * tests, or from {@code -Dkahadb.library.path=...}.
 */
public final class JournalBench {
    private static final int SYNC8_THREADS = 8;

    private JournalBench() {
    }

    /** One implementation under test. */
    private interface Target extends AutoCloseable {
        void append(byte[] data, boolean sync) throws IOException;

        /** Makes everything appended durable and closes the journal. */
        void syncAndClose() throws IOException;

        @Override
        void close() throws IOException;
    }

    private static final class KahadbTarget implements Target {
        private final Journal journal;

        KahadbTarget(Path dir) throws IOException {
            journal = Journal.open(dir);
        }

        @Override
        public void append(byte[] data, boolean sync) throws IOException {
            journal.append(data, sync);
        }

        @Override
        public void syncAndClose() throws IOException {
            journal.sync();
            journal.close();
        }

        @Override
        public void close() throws IOException {
            journal.close();
        }
    }

    private static final class ActiveMqTarget implements Target {
        private final org.apache.activemq.store.kahadb.disk.journal.Journal journal;
        private final Path dir;
        private boolean closed;

        ActiveMqTarget(Path dir) throws IOException {
            this.dir = dir;
            journal = new org.apache.activemq.store.kahadb.disk.journal.Journal();
            journal.setDirectory(dir.toFile());
            journal.setChecksum(true);
            journal.start();
        }

        @Override
        public void append(byte[] data, boolean sync) throws IOException {
            journal.write(new ByteSequence(data), sync);
        }

        @Override
        public void syncAndClose() throws IOException {
            close();
            try (DirectoryStream<Path> files = Files.newDirectoryStream(dir, "db-*.log")) {
                for (Path f : files) {
                    try (FileChannel ch = FileChannel.open(f, StandardOpenOption.WRITE)) {
                        ch.force(true);
                    }
                }
            }
        }

        @Override
        public void close() throws IOException {
            if (!closed) {
                closed = true;
                journal.close();
            }
        }
    }

    public static void main(String[] args) throws Exception {
        // Keep ActiveMQ's logging (slf4j-simple, on stderr) quiet unless asked otherwise.
        if (System.getProperty("org.slf4j.simpleLogger.defaultLogLevel") == null) {
            System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        }
        String impl = null;
        String benchCase = null;
        long records = -1;
        int size = 1024;
        Path dir = null;
        long warmup = -1;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (i + 1 >= args.length) {
                usage("missing value for " + a);
            }
            String v = args[++i];
            switch (a) {
                case "--impl" -> impl = v;
                case "--case" -> benchCase = v;
                case "--records" -> records = parseLong(a, v);
                case "--size" -> size = (int) parseLong(a, v);
                case "--dir" -> dir = Paths.get(v);
                case "--warmup" -> warmup = parseLong(a, v);
                default -> usage("unknown option " + a);
            }
        }
        if (impl == null || !(impl.equals("kahadb") || impl.equals("activemq"))) {
            usage("--impl must be kahadb or activemq");
        }
        if (benchCase == null || !(benchCase.equals("sync1") || benchCase.equals("sync8") || benchCase.equals("async1"))) {
            usage("--case must be sync1, sync8 or async1");
        }
        if (records <= 0 || records > Integer.MAX_VALUE) {
            usage("--records must be a positive int");
        }
        if (size <= 0) {
            usage("--size must be positive");
        }
        if (dir == null) {
            usage("--dir is required");
        }
        if (warmup < 0) {
            warmup = Math.max(1, Math.min(1000, records / 10));
        }
        prepareEmptyDir(dir);

        boolean sync = !benchCase.equals("async1");
        int threads = benchCase.equals("sync8") ? SYNC8_THREADS : 1;
        byte[] template = new byte[size];
        new SplittableRandom(42).nextBytes(template);

        Target target = impl.equals("kahadb") ? new KahadbTarget(dir) : new ActiveMqTarget(dir);
        long[][] latencies;
        long elapsedNanos;
        try {
            // Warm-up, in the same mode, not measured.
            run(target, template, (int) warmup, threads, sync, -1L << 40);
            if (!sync) {
                // Wait until the warm-up's queued writes are out of the way.
                target.append(template.clone(), true);
            }

            long start = System.nanoTime();
            latencies = run(target, template, (int) records, threads, sync, 0);
            if (!sync) {
                target.syncAndClose();
            }
            elapsedNanos = System.nanoTime() - start;
        } finally {
            target.close();
        }

        double opsPerSec = records / (elapsedNanos / 1e9);
        String p50 = "null";
        String p99 = "null";
        if (sync) {
            long[] all = Arrays.stream(latencies).flatMapToLong(Arrays::stream).sorted().toArray();
            p50 = micros(percentile(all, 0.50));
            p99 = micros(percentile(all, 0.99));
        }
        System.out.println(String.format(Locale.ROOT,
                "{\"impl\":\"%s\",\"case\":\"%s\",\"ops_per_sec\":%.1f,\"p50_us\":%s,\"p99_us\":%s,\"records\":%d}",
                impl, benchCase, opsPerSec, p50, p99, records));
    }

    /**
     * Appends {@code total} records split over {@code threads} threads and returns each thread's
     * per-append latencies in nanoseconds. {@code seqBase} makes record contents distinct.
     */
    private static long[][] run(Target target, byte[] template, int total, int threads, boolean sync, long seqBase)
            throws Exception {
        long[][] latencies = new long[threads][];
        if (threads == 1) {
            latencies[0] = appendLoop(target, template, total, sync, seqBase);
            return latencies;
        }
        CountDownLatch go = new CountDownLatch(1);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        List<Thread> workers = new ArrayList<>();
        for (int t = 0; t < threads; t++) {
            final int thread = t;
            final int count = total / threads + (t < total % threads ? 1 : 0);
            Thread w = new Thread(() -> {
                try {
                    go.await();
                    latencies[thread] = appendLoop(target, template, count, sync, seqBase + ((long) thread << 32));
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            }, "bench-writer-" + t);
            workers.add(w);
            w.start();
        }
        go.countDown();
        for (Thread w : workers) {
            w.join();
        }
        if (failure.get() != null) {
            throw new IllegalStateException("a writer failed", failure.get());
        }
        return latencies;
    }

    private static long[] appendLoop(Target target, byte[] template, int count, boolean sync, long seqBase)
            throws IOException {
        long[] latencies = new long[count];
        for (int i = 0; i < count; i++) {
            byte[] data = template.clone();
            long seq = seqBase + i;
            for (int b = 0; b < Math.min(8, data.length); b++) {
                data[b] = (byte) (seq >>> (8 * b));
            }
            long t0 = System.nanoTime();
            target.append(data, sync);
            latencies[i] = System.nanoTime() - t0;
        }
        return latencies;
    }

    /** Nearest-rank percentile of sorted values. */
    static long percentile(long[] sorted, double p) {
        if (sorted.length == 0) {
            return 0;
        }
        int rank = (int) Math.ceil(p * sorted.length);
        return sorted[Math.max(0, Math.min(sorted.length - 1, rank - 1))];
    }

    private static String micros(long nanos) {
        return String.format(Locale.ROOT, "%.1f", nanos / 1000.0);
    }

    private static void prepareEmptyDir(Path dir) throws IOException {
        if (Files.exists(dir)) {
            try (DirectoryStream<Path> s = Files.newDirectoryStream(dir)) {
                if (s.iterator().hasNext()) {
                    usage("--dir " + dir + " is not empty");
                }
            }
        } else {
            Files.createDirectories(dir);
        }
    }

    private static long parseLong(String option, String v) {
        try {
            return Long.parseLong(v);
        } catch (NumberFormatException e) {
            usage(option + " needs a number, not " + v);
            return -1;
        }
    }

    private static void usage(String problem) {
        System.err.println("JournalBench: " + problem);
        System.err.println("usage: JournalBench --impl kahadb|activemq --case sync1|sync8|async1 --records N"
                + " [--size 1024] --dir D [--warmup W]");
        System.exit(2);
    }
}
