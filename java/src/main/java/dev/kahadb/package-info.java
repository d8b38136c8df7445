/**
 * Java bindings of kahadb-rs, a journal that reads and writes ActiveMQ KahaDB's journal format
 * ({@code db-N.log} files), implemented in Rust.
 *
 * <p>Start with {@link dev.kahadb.Journal#open(java.nio.file.Path)}. Every failure of the
 * native library is a {@link dev.kahadb.KahaDBException} (an {@link java.io.IOException}) with
 * an {@link dev.kahadb.ErrorCode}.
 *
 * <p><b>Null arguments:</b> every method of this package rejects a null argument with a
 * {@link java.lang.NullPointerException} before calling the native library; the native code's
 * own {@code NULL_ARGUMENT} check is a second line of defence that the public API never reaches.
 * Out-of-range array slices are rejected with an {@link java.lang.IndexOutOfBoundsException}.
 *
 * <p><b>Threads:</b> a {@link dev.kahadb.Journal} may be used by any number of threads at once,
 * including {@code close()}, which makes calls in progress finish or fail with
 * {@link dev.kahadb.ErrorCode#CLOSED} and never crashes the JVM. A
 * {@link dev.kahadb.JournalCursor} is meant for one thread at a time (its methods are
 * synchronized, so sharing one is safe but serial).
 *
 * <p>The native library is loaded by {@link dev.kahadb.NativeLibrary}.
 */
package dev.kahadb;
