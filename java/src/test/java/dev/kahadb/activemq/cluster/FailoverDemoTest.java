package dev.kahadb.activemq.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The failover demo of {@code make demo}, small: three launcher processes and ZooKeeper, the
 * master SIGKILLed under a producer's load, a slave taking over at a higher epoch, the killed node
 * restarted and live again, every acknowledged message received, no process left behind.
 */
class FailoverDemoTest {
    @TempDir
    Path dir;

    @Test
    void masterKilledNothingLost() throws Exception {
        Set<Long> before = childPids();
        FailoverDemo.Options o = new FailoverDemo.Options().dir(dir.resolve("demo")).before(200).after(200)
                .sessionTimeoutMs(2000);
        FailoverDemo.Summary s = FailoverDemo.run(o, System.out);

        assertTrue(s.ok(), "lost: " + s.firstLost());
        assertEquals(0, s.lost());
        assertEquals(List.of(), s.firstLost());
        assertTrue(s.acknowledged() >= 400, "acknowledged " + s.acknowledged());
        assertTrue(s.distinctReceived() >= s.acknowledged(),
                "received " + s.distinctReceived() + " of " + s.acknowledged());
        assertTrue(s.received() >= s.distinctReceived());
        assertTrue(s.attempted() >= s.acknowledged() + s.failed());

        assertNotEquals(s.killedMaster(), s.newMaster());
        assertTrue(s.newEpoch() > s.killedEpoch(), "epoch " + s.killedEpoch() + " then " + s.newEpoch());
        assertTrue(s.brokerUpMs() > 0, "broker up " + s.brokerUpMs() + " ms after the kill");
        assertTrue(s.firstAckMs() > 0, "first ack " + s.firstAckMs() + " ms after the kill");
        assertTrue(s.restarted());
        assertTrue(s.rejoined(), s.killedMaster() + " did not rejoin");
        assertTrue(s.rejoinLiveMs() > 0);
        assertEquals(List.of(), s.splitBrains());

        Set<Long> after = childPids();
        after.removeAll(before);
        assertEquals(Set.of(), after, "processes left behind");
        assertTrue(Files.exists(dir.resolve("demo").resolve(FailoverDemo.MARKER)));
    }

    @Test
    void options() {
        FailoverDemo.Options o = FailoverDemo.parse(new String[] {"--before", "10", "--after=20", "--dir", "x",
            "--session-timeout-ms", "1000", "--no-restart"});
        assertEquals(10, o.before);
        assertEquals(20, o.after);
        assertEquals(Path.of("x"), o.dir);
        assertEquals(1000, o.sessionTimeoutMs);
        assertFalse(o.restart);

        FailoverDemo.Options d = FailoverDemo.parse(new String[0]);
        assertEquals(500, d.before);
        assertEquals(500, d.after);
        assertNull(d.dir);
        assertEquals(4000, d.sessionTimeoutMs);
        assertTrue(d.restart);

        assertNull(FailoverDemo.parse(new String[] {"--help"}));
        assertThrows(IllegalArgumentException.class, () -> FailoverDemo.parse(new String[] {"--session-timeout-ms", "5000"}));
        assertThrows(IllegalArgumentException.class, () -> FailoverDemo.parse(new String[] {"--before", "x"}));
        assertThrows(IllegalArgumentException.class, () -> FailoverDemo.parse(new String[] {"--before"}));
        assertThrows(IllegalArgumentException.class, () -> FailoverDemo.parse(new String[] {"--after", "0"}));
        assertThrows(IllegalArgumentException.class, () -> FailoverDemo.parse(new String[] {"--bogus"}));
    }

    @Test
    void wipesOnlyItsOwnDirectory() throws IOException {
        Path other = dir.resolve("other");
        Files.createDirectories(other);
        Files.writeString(other.resolve("keep.txt"), "keep");
        assertThrows(IOException.class, () -> FailoverDemo.wipe(other));
        assertTrue(Files.exists(other.resolve("keep.txt")));

        Path own = dir.resolve("own");
        FailoverDemo.wipe(own);
        Files.createDirectories(own.resolve("node1"));
        Files.writeString(own.resolve("node1/file"), "old");
        FailoverDemo.wipe(own);
        assertFalse(Files.exists(own.resolve("node1")));
        assertTrue(Files.exists(own.resolve(FailoverDemo.MARKER)));
    }

    private static Set<Long> childPids() {
        return ProcessHandle.current().children().filter(ProcessHandle::isAlive).map(ProcessHandle::pid)
                .collect(Collectors.toSet());
    }
}
