package dev.kahadb;

/**
 * Where a record is in a journal: its data file id, the offset of its header in that file, and
 * its size including the 5-byte record header (the payload is {@code size - 5} bytes).
 *
 * <p>Locations have the meaning and the values of ActiveMQ KahaDB's journal locations. They order
 * by file id, then offset (then size).
 *
 * @param fileId the data file id ({@code db-<fileId>.log})
 * @param offset the offset of the record's header in the data file
 * @param size the record's size including its 5-byte header
 */
public record Location(int fileId, int offset, int size) implements Comparable<Location> {
    /** Size of the header in front of every record's payload (4-byte length, 1-byte type). */
    public static final int RECORD_HEADER_SIZE = 5;

    /** The location whose file id and offset are packed in {@code packed} (as the native code does). */
    static Location unpack(long packed, int size) {
        return new Location((int) (packed >>> 32), (int) packed, size);
    }

    /** The payload length of the record here. */
    public int payloadLength() {
        return size - RECORD_HEADER_SIZE;
    }

    @Override
    public int compareTo(Location o) {
        int c = Integer.compare(fileId, o.fileId);
        if (c == 0) {
            c = Integer.compare(offset, o.offset);
        }
        if (c == 0) {
            c = Integer.compare(size, o.size);
        }
        return c;
    }

    @Override
    public String toString() {
        return fileId + ":" + offset + "(" + size + ")";
    }
}
