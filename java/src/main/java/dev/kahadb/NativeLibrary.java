package dev.kahadb;

import java.io.IOException;
import java.io.InputStream;
import java.lang.ref.Cleaner;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.Locale;

/**
 * Loads the native library, once per class loader.
 *
 * <ul>
 *   <li>If the system property {@value #PATH_PROPERTY} is set, the file it names is loaded.
 *   <li>Otherwise the library packed in the jar as {@code /native/<platform>/libkahadb.so} is
 *       copied to a temporary file (in {@code java.io.tmpdir}, which must allow mapping
 *       executable code) and loaded from there; the temporary file is deleted right after
 *       loading. The only platform shipped is {@value #PLATFORM}.
 * </ul>
 *
 * <p>A failure is reported as an {@link UnsatisfiedLinkError} that says what was tried, and is
 * reported again (with the same cause) on every later attempt.
 */
public final class NativeLibrary {
    /** System property naming a {@code libkahadb.so} to load instead of the packed one. */
    public static final String PATH_PROPERTY = "kahadb.library.path";
    /** The platform whose library the jar carries. */
    public static final String PLATFORM = "linux-x86_64";
    /** Resource path of the packed library. */
    static final String RESOURCE = "/native/" + PLATFORM + "/libkahadb.so";

    /** Cleans up native handles of journals and cursors that were never closed. */
    static final Cleaner CLEANER = Cleaner.create();

    private static boolean loaded;
    private static UnsatisfiedLinkError failure;
    private static String loadedFrom;

    private NativeLibrary() {
    }

    /**
     * Loads the library if it is not loaded yet.
     *
     * @throws UnsatisfiedLinkError if it cannot be loaded
     */
    public static synchronized void load() {
        if (loaded) {
            return;
        }
        if (failure != null) {
            UnsatisfiedLinkError again = new UnsatisfiedLinkError(failure.getMessage());
            again.initCause(failure);
            throw again;
        }
        try {
            loadedFrom = doLoad();
            loaded = true;
        } catch (UnsatisfiedLinkError e) {
            failure = e;
            throw e;
        }
    }

    /** Where the library was loaded from (the file, or the jar resource), or null if not loaded. */
    public static synchronized String loadedFrom() {
        return loadedFrom;
    }

    private static String doLoad() {
        String explicit = System.getProperty(PATH_PROPERTY);
        if (explicit != null && !explicit.isEmpty()) {
            Path file = Paths.get(explicit).toAbsolutePath();
            if (!Files.isRegularFile(file)) {
                throw new UnsatisfiedLinkError("kahadb: " + PATH_PROPERTY + " names " + file
                        + ", which is not a file");
            }
            System.load(file.toString());
            return file.toString();
        }

        String platform = currentPlatform();
        if (!PLATFORM.equals(platform)) {
            throw new UnsatisfiedLinkError("kahadb: the jar carries a native library for " + PLATFORM
                    + " only, and this is " + platform + "; build libkahadb for this platform and set -D"
                    + PATH_PROPERTY + "=/path/to/libkahadb.so");
        }
        Path tmp = null;
        try (InputStream in = NativeLibrary.class.getResourceAsStream(RESOURCE)) {
            if (in == null) {
                throw new UnsatisfiedLinkError("kahadb: resource " + RESOURCE
                        + " is missing from the class path (a jar built without the native library?);"
                        + " set -D" + PATH_PROPERTY + "=/path/to/libkahadb.so");
            }
            tmp = Files.createTempFile("libkahadb-", ".so");
            Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING);
            System.load(tmp.toAbsolutePath().toString());
            return "classpath:" + RESOURCE;
        } catch (IOException e) {
            UnsatisfiedLinkError error = new UnsatisfiedLinkError("kahadb: could not extract "
                    + RESOURCE + " to a temporary file: " + e);
            error.initCause(e);
            throw error;
        } finally {
            if (tmp != null) {
                try {
                    // The loaded library stays mapped; the file is not needed any more.
                    Files.deleteIfExists(tmp);
                } catch (IOException ignored) {
                    tmp.toFile().deleteOnExit();
                }
            }
        }
    }

    /** The platform name in the form used for the packed libraries, e.g. {@code linux-x86_64}. */
    static String currentPlatform() {
        String os = System.getProperty("os.name", "unknown").toLowerCase(Locale.ROOT);
        String arch = System.getProperty("os.arch", "unknown").toLowerCase(Locale.ROOT);
        if (os.startsWith("linux")) {
            os = "linux";
        } else if (os.startsWith("mac") || os.startsWith("darwin")) {
            os = "macos";
        } else if (os.startsWith("windows")) {
            os = "windows";
        }
        if (arch.equals("amd64") || arch.equals("x86_64") || arch.equals("x64")) {
            arch = "x86_64";
        } else if (arch.equals("arm64") || arch.equals("aarch64")) {
            arch = "aarch64";
        }
        return os + "-" + arch;
    }
}
