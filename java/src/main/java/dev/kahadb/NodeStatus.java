package dev.kahadb;

import java.nio.BufferUnderflowException;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * A replication node's status, as {@link Node#status()} reads it.
 *
 * @param role the node's role
 * @param node this node's identity, {@code host:port}
 * @param epoch the highest epoch this node knows
 * @param lineage the epoch of the master whose journal this node's copy is a prefix of, as last
 *     recorded in its directory (its own epoch as master, its master's as a slave)
 * @param master a slave's master ({@code kdbr://host:port}), a master's own address, else null
 * @param position a master's written journal position; a slave's durable one
 * @param minimumReplicas live slaves a synchronous write waits for
 * @param replicationTimeoutMs how long it waits for them, in milliseconds
 * @param slaves a master's slaves (empty otherwise)
 * @param link a slave's link to its master, else null
 * @param bytesToGo a syncing slave: bytes its initial sync still needs
 * @param applied a slave: where its hot standby index stands, else null
 * @param lastError a slave: why its link last ended (a full disk, a master gone, ...), or null
 */
public record NodeStatus(Node.Role role, String node, long epoch, long lineage, String master,
        Position position, long minimumReplicas, long replicationTimeoutMs, List<Slave> slaves, LinkState link,
        long bytesToGo, Position applied, String lastError) {

    /** A place in the journal: a data file id and an offset in it. */
    public record Position(long file, long offset) {
        @Override
        public String toString() {
            return file + ":" + offset;
        }
    }

    /** Where a slave of a master stands. */
    public enum SlaveState {
        /** Copying sealed files over transfer sessions. */
        SYNCING,
        /** On the live stream; counts toward {@code minimumReplicas}. */
        LIVE,
        /** Its session ended ({@link Slave#reason()} says why); it no longer counts. */
        LEFT
    }

    /** Where a slave's link to its master stands. */
    public enum LinkState {
        /** Connecting or reconnecting (after a failure: see {@link NodeStatus#lastError()}). */
        CONNECTING,
        /** Copying sealed files. */
        SYNCING,
        /** On the live stream. */
        LIVE
    }

    /**
     * A slave as its master sees it.
     *
     * @param node the slave's identity, {@code host:port}
     * @param state where it stands
     * @param durable a live slave: everything before it is on the slave's disk; else null
     * @param lagBytes bytes written on the master that the slave has not acknowledged
     * @param bytesToGo a syncing slave: bytes its initial sync still needs
     * @param reason a slave that left: why its session ended; else null
     */
    public record Slave(String node, SlaveState state, Position durable, long lagBytes, long bytesToGo,
            String reason) {
    }

    public NodeStatus {
        slaves = List.copyOf(slaves);
    }

    /** How many of a master's slaves are live (count toward {@code minimumReplicas}). */
    public long liveSlaves() {
        return slaves.stream().filter(s -> s.state() == SlaveState.LIVE).count();
    }

    /**
     * Decodes the status the native library packs (see {@code pack_status} in
     * {@code src/jni/node.rs}). Big-endian; {@code string} is an int32 byte length and UTF-8,
     * {@code string?} the same or the int32 -1 for none:
     *
     * <pre>
     * status    = u8 role, string node, i64 epoch, i64 lineage, string? master, position,
     *             i64 minimumReplicas, i64 replicationTimeoutMs, i32 n, n x slave,
     *             u8 link (0 none, else LinkState ordinal + 1), i64 bytesToGo,
     *             position? applied, string? lastError
     * slave     = string node, u8 state, position? durable, i64 lagBytes, i64 bytesToGo,
     *             string? reason
     * position  = i64 file, i64 offset
     * position? = u8 0 | u8 1, position
     * </pre>
     *
     * Strict: an unknown enum value, a short buffer or bytes left over is an error.
     *
     * @throws KahaDBException with {@link ErrorCode#INTERNAL} if the bytes are not a status
     */
    static NodeStatus decode(byte[] packed) throws KahaDBException {
        ByteBuffer b = ByteBuffer.wrap(packed);
        try {
            Node.Role role = ordinal(Node.Role.values(), b.get(), "role");
            String node = string(b);
            long epoch = b.getLong();
            long lineage = b.getLong();
            String master = stringOrNull(b);
            Position position = position(b);
            long minimumReplicas = b.getLong();
            long replicationTimeoutMs = b.getLong();
            int n = b.getInt();
            if (n < 0 || n > b.remaining()) {
                throw malformed("slave count " + n);
            }
            List<Slave> slaves = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                String slave = string(b);
                SlaveState state = ordinal(SlaveState.values(), b.get(), "slave state");
                Position durable = positionOrNull(b);
                long lag = b.getLong();
                long toGo = b.getLong();
                slaves.add(new Slave(slave, state, durable, lag, toGo, stringOrNull(b)));
            }
            int linkValue = Byte.toUnsignedInt(b.get());
            LinkState link = linkValue == 0 ? null : ordinal(LinkState.values(), linkValue - 1, "link state");
            long bytesToGo = b.getLong();
            Position applied = positionOrNull(b);
            String lastError = stringOrNull(b);
            if (b.hasRemaining()) {
                throw malformed(b.remaining() + " bytes left over");
            }
            return new NodeStatus(role, node, epoch, lineage, master, position, minimumReplicas, replicationTimeoutMs,
                    slaves, link, bytesToGo, applied, lastError);
        } catch (BufferUnderflowException e) {
            throw malformed("truncated");
        }
    }

    private static KahaDBException malformed(String why) {
        return new KahaDBException(ErrorCode.INTERNAL, "malformed node status from the native library: " + why);
    }

    private static <E> E ordinal(E[] values, int value, String what) throws KahaDBException {
        if (value < 0 || value >= values.length) {
            throw malformed(what + " " + value);
        }
        return values[value];
    }

    private static String stringOrNull(ByteBuffer b) throws KahaDBException {
        int n = b.getInt();
        if (n == -1) {
            return null;
        }
        if (n < 0 || n > b.remaining()) {
            throw malformed("string length " + n);
        }
        ByteBuffer bytes = b.slice(b.position(), n);
        b.position(b.position() + n);
        try {
            return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(bytes).toString();
        } catch (CharacterCodingException e) {
            throw malformed("a string is not UTF-8");
        }
    }

    private static String string(ByteBuffer b) throws KahaDBException {
        String s = stringOrNull(b);
        if (s == null) {
            throw malformed("null where a string is required");
        }
        return s;
    }

    private static Position position(ByteBuffer b) {
        return new Position(b.getLong(), b.getLong());
    }

    private static Position positionOrNull(ByteBuffer b) throws KahaDBException {
        byte present = b.get();
        switch (present) {
            case 0:
                return null;
            case 1:
                return position(b);
            default:
                throw malformed("position flag " + present);
        }
    }
}
