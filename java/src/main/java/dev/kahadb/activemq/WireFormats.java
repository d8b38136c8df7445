package dev.kahadb.activemq;

import java.io.IOException;

import org.apache.activemq.command.DataStructure;
import org.apache.activemq.openwire.OpenWireFormat;
import org.apache.activemq.util.ByteSequence;

/**
 * OpenWire marshalling at the store's OpenWire version, one {@link OpenWireFormat} per thread
 * (its {@code marshal} is synchronized and reuses a buffer). Bytes are those KahaDB writes:
 * loose encoding with the 4-byte size prefix.
 */
final class WireFormats {
    private volatile int version;
    private final ThreadLocal<OpenWireFormat> formats;

    WireFormats(int version) {
        this.version = version;
        this.formats = ThreadLocal.withInitial(() -> new OpenWireFormat(this.version));
    }

    int version() {
        return version;
    }

    void version(int value) {
        this.version = value;
    }

    private OpenWireFormat format() {
        OpenWireFormat f = formats.get();
        int v = version;
        if (f.getVersion() != v) {
            f.setVersion(v);
        }
        return f;
    }

    /**
     * Marshals a command. The result is valid until this thread marshals again: hand it to the
     * store (which copies it) or copy it first.
     */
    ByteSequence marshal(DataStructure o) throws IOException {
        return format().marshal(o);
    }

    /** Marshals a command into a new array of exactly its length. */
    byte[] marshalToArray(DataStructure o) throws IOException {
        ByteSequence s = format().marshal(o);
        byte[] out = new byte[s.getLength()];
        System.arraycopy(s.getData(), s.getOffset(), out, 0, s.getLength());
        return out;
    }

    Object unmarshal(byte[] data) throws IOException {
        return format().unmarshal(new ByteSequence(data));
    }
}
