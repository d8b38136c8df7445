package dev.kahadb.activemq;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Acknowledgements of prepared XA transactions recovered at start-up (trap T19): the messages
 * they acknowledge are hidden from batches and recovery until the outcome, and after a
 * rollback are handed out again, at the head of the next batch if the cursor has passed them.
 *
 * <p>Keyed like KahaDB: by the queue's physical name, or by the durable subscription key.
 * Thread-safe.
 */
final class RecoveredAcks {
    /** Position of a message in a destination: its sequence and lane. */
    record Position(long sequence, int lane) {
    }

    private final Map<String, Set<String>> hidden = new HashMap<>();
    /** Where hidden messages are (found at recovery, or when a batch walked over them). */
    private final Map<String, Map<String, Position>> skipped = new HashMap<>();
    /** Rolled back: to hand out again (position null: the cursor never walked over it). */
    private final Map<String, LinkedHashMap<String, Position>> rolledBack = new HashMap<>();
    private volatile boolean empty = true;

    private void updateEmpty() {
        empty = hidden.isEmpty() && rolledBack.isEmpty();
    }

    synchronized void hide(String key, String messageId) {
        hidden.computeIfAbsent(key, k -> new LinkedHashSet<>()).add(messageId);
        updateEmpty();
    }

    boolean isHidden(String key, String messageId) {
        if (empty) {
            return false;
        }
        synchronized (this) {
            Set<String> s = hidden.get(key);
            return s != null && s.contains(messageId);
        }
    }

    /** Where a hidden message is. */
    synchronized void skipped(String key, String messageId, long sequence, int lane) {
        skipped.computeIfAbsent(key, k -> new HashMap<>()).put(messageId, new Position(sequence, lane));
    }

    /** The outcome of the transaction that acknowledged it is known. */
    synchronized void release(String key, String messageId, boolean rollback) {
        Set<String> s = hidden.get(key);
        if (s != null) {
            s.remove(messageId);
            if (s.isEmpty()) {
                hidden.remove(key);
            }
        }
        Position p = null;
        Map<String, Position> sk = skipped.get(key);
        if (sk != null) {
            p = sk.remove(messageId);
            if (sk.isEmpty()) {
                skipped.remove(key);
            }
        }
        if (rollback) {
            rolledBack.computeIfAbsent(key, k -> new LinkedHashMap<>()).put(messageId, p);
        }
        updateEmpty();
    }

    synchronized int hiddenCount(String key) {
        Set<String> s = hidden.get(key);
        return s == null ? 0 : s.size();
    }

    /** Takes the rolled-back messages of a key, oldest first. */
    synchronized List<Map.Entry<String, Position>> takeRolledBack(String key) {
        if (empty) {
            return List.of();
        }
        LinkedHashMap<String, Position> m = rolledBack.remove(key);
        updateEmpty();
        return m == null ? List.of() : new ArrayList<>(m.entrySet());
    }

    /** Puts back rolled-back messages a batch had no room for. */
    synchronized void putBack(String key, List<Map.Entry<String, Position>> rest) {
        if (rest.isEmpty()) {
            return;
        }
        LinkedHashMap<String, Position> m = new LinkedHashMap<>();
        for (Map.Entry<String, Position> e : rest) {
            m.put(e.getKey(), e.getValue());
        }
        LinkedHashMap<String, Position> later = rolledBack.remove(key);
        if (later != null) {
            m.putAll(later);
        }
        rolledBack.put(key, m);
        updateEmpty();
    }

    /** Forgets a key (the destination or subscription is gone). */
    synchronized void forget(String key) {
        hidden.remove(key);
        skipped.remove(key);
        rolledBack.remove(key);
        updateEmpty();
    }

    synchronized void clear() {
        hidden.clear();
        skipped.clear();
        rolledBack.clear();
        updateEmpty();
    }
}
