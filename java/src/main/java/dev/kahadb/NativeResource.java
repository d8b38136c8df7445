package dev.kahadb;

import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * The native handle of a journal or cursor, closed exactly once: explicitly, by its owner, or
 * by the {@link NativeLibrary#CLEANER} once the Java object is unreachable. It holds no
 * reference to the Java object that owns it.
 */
final class NativeResource implements Runnable {
    /** Closes a native handle. */
    interface Closer {
        void close(long handle) throws KahaDBException;
    }

    final long handle;
    private final Closer closer;
    private final Set<NativeResource> registry;
    private final AtomicBoolean closed = new AtomicBoolean();

    /**
     * @param registry a set this resource is in while open (and leaves when closed), or null
     */
    NativeResource(long handle, Closer closer, Set<NativeResource> registry) {
        this.handle = handle;
        this.closer = closer;
        this.registry = registry;
        if (registry != null) {
            registry.add(this);
        }
    }

    boolean isClosed() {
        return closed.get();
    }

    /** Closes the handle unless it was already closed, reporting a failure to close. */
    void close() throws KahaDBException {
        if (closed.compareAndSet(false, true)) {
            try {
                closer.close(handle);
            } finally {
                if (registry != null) {
                    registry.remove(this);
                }
            }
        }
    }

    /** The cleaner's action: closes the handle and ignores any failure (nobody could see it). */
    @Override
    public void run() {
        try {
            close();
        } catch (KahaDBException | RuntimeException ignored) {
            // The owner was dropped without close(); there is no caller left to report to.
        }
    }
}
