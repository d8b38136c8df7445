package dev.kahadb.activemq;

import java.io.File;

/** Adapters for ActiveMQ's own test suites: one fixed directory per suite under target/. */
final class SuiteSupport {
    private SuiteSupport() {
    }

    static File dir(String suite) {
        return new File("target/activemq-data/kahadb-rs-" + suite);
    }

    static KahaRsPersistenceAdapter adapter(String suite, boolean delete) throws Exception {
        KahaRsPersistenceAdapter a = new KahaRsPersistenceAdapter();
        a.setDirectory(dir(suite));
        // Small files keep the suites' many fresh stores cheap to create.
        a.setJournalMaxFileLength(4 * 1024 * 1024);
        if (delete) {
            a.deleteAllMessages();
        }
        return a;
    }
}
