package dev.kahadb;

import java.util.Arrays;
import java.util.Objects;

/**
 * One record read by a {@link JournalCursor}: its location and its payload.
 *
 * <p>The payload array is the record's own (not copied again on access); equality compares its
 * contents.
 *
 * @param location where the record is
 * @param data the record's payload
 */
public record JournalRecord(Location location, byte[] data) {
    /** Creates a record; neither argument may be null. */
    public JournalRecord {
        Objects.requireNonNull(location, "location");
        Objects.requireNonNull(data, "data");
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof JournalRecord r && location.equals(r.location) && Arrays.equals(data, r.data);
    }

    @Override
    public int hashCode() {
        return 31 * location.hashCode() + Arrays.hashCode(data);
    }

    @Override
    public String toString() {
        return "JournalRecord[" + location + ", " + data.length + " bytes]";
    }
}
