package dev.kahadb;

/** Library-wide information. */
public final class Kahadb {
    static {
        NativeLibrary.load();
    }

    private Kahadb() {
    }

    /** The version of the loaded native library (the version of the kahadb-rs crate). */
    public static String version() {
        return nativeVersion();
    }

    /**
     * Exercises the native error bridge (for the tests): 0 returns, 1 throws an {@code IO}
     * error, 2 and 3 panic in native code, which must surface as {@code INTERNAL}.
     */
    static void raise(int kind) throws KahaDBException {
        raise0(kind);
    }

    private static native String nativeVersion();

    private static native void raise0(int kind) throws KahaDBException;
}
