package dev.kahadb;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class NativeLibraryTest {
    @TempDir
    Path tmp;

    @Test
    void loadsFromTheJarResource() {
        Kahadb.version();
        assertEquals("linux-x86_64", NativeLibrary.currentPlatform());
        assertEquals("classpath:" + NativeLibrary.RESOURCE, NativeLibrary.loadedFrom(),
                "the tests run without " + NativeLibrary.PATH_PROPERTY + " and load the packed library");
    }

    @Test
    void loadsAnExplicitPathInAFreshJvm() throws Exception {
        Path lib = tmp.resolve("copy-of-libkahadb.so");
        try (InputStream in = NativeLibrary.class.getResourceAsStream(NativeLibrary.RESOURCE)) {
            assertTrue(in != null, "packed library present");
            Files.copy(in, lib);
        }
        Result r = runProbe("-D" + NativeLibrary.PATH_PROPERTY + "=" + lib);
        assertEquals(0, r.exit, r.output);
        assertTrue(r.output.contains("loaded from " + lib.toAbsolutePath()), r.output);
        assertTrue(r.output.contains("version " + Kahadb.version()), r.output);
    }

    @Test
    void reportsAMissingExplicitPath() throws Exception {
        Path missing = tmp.resolve("nope/libkahadb.so");
        Result r = runProbe("-D" + NativeLibrary.PATH_PROPERTY + "=" + missing);
        assertNotEquals(0, r.exit, r.output);
        assertTrue(r.output.contains("UnsatisfiedLinkError"), r.output);
        assertTrue(r.output.contains("not a file"), r.output);
        // The second attempt reports the same failure again.
        assertTrue(r.output.contains("second attempt: UnsatisfiedLinkError"), r.output);
    }

    private record Result(int exit, String output) {
    }

    private static Result runProbe(String... jvmArgs) throws IOException, InterruptedException {
        List<String> cmd = new ArrayList<>();
        cmd.add(Paths.get(System.getProperty("java.home"), "bin", "java").toString());
        cmd.addAll(List.of(jvmArgs));
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(LoaderProbe.class.getName());
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        byte[] out = p.getInputStream().readAllBytes();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "probe finished");
        return new Result(p.exitValue(), new String(out, StandardCharsets.UTF_8));
    }
}
