package dev.kahadb.activemq;

import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Comparator;
import java.util.function.Consumer;
import java.util.stream.Stream;

import org.apache.activemq.ActiveMQConnectionFactory;
import org.apache.activemq.ActiveMQXAConnectionFactory;
import org.apache.activemq.RedeliveryPolicy;
import org.apache.activemq.broker.BrokerService;
import org.apache.activemq.broker.TransportConnector;

/**
 * A real broker with the kahadb-rs adapter, listening on an ephemeral tcp port, with its data in
 * {@code target/kahadb-rs-tests/<name>}. {@link #restart()} stops it and starts a new broker on
 * the same directory.
 */
final class BrokerFixture implements AutoCloseable {
    static final Path ROOT = Paths.get("target", "kahadb-rs-tests");

    final String name;
    final Path dir;
    private final Consumer<BrokerService> configure;
    private final Consumer<KahaRsPersistenceAdapter> configureAdapter;
    BrokerService broker;
    KahaRsPersistenceAdapter adapter;
    URI uri;

    BrokerFixture(String name) throws Exception {
        this(name, b -> { }, a -> { });
    }

    BrokerFixture(String name, Consumer<BrokerService> configure, Consumer<KahaRsPersistenceAdapter> configureAdapter)
            throws Exception {
        this.name = name;
        this.dir = ROOT.resolve(name).toAbsolutePath();
        this.configure = configure;
        this.configureAdapter = configureAdapter;
        delete(dir);
        start(false);
    }

    static void delete(Path dir) throws IOException {
        if (!Files.exists(dir)) {
            return;
        }
        try (Stream<Path> s = Files.walk(dir)) {
            s.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    void start(boolean deleteAll) throws Exception {
        broker = new BrokerService();
        broker.setBrokerName(name);
        broker.setUseJmx(false);
        broker.setUseShutdownHook(false);
        broker.setAdvisorySupport(false);
        broker.setDataDirectoryFile(dir.toFile());
        broker.setTmpDataDirectory(new File(dir.toFile(), "tmp_storage"));
        broker.setDeleteAllMessagesOnStartup(deleteAll);
        adapter = new KahaRsPersistenceAdapter();
        adapter.setDirectory(dir.resolve("store").toFile());
        adapter.setJournalMaxFileLength(32 * 1024 * 1024);
        configureAdapter.accept(adapter);
        broker.setPersistenceAdapter(adapter);
        TransportConnector connector = broker.addConnector("tcp://127.0.0.1:0");
        configure.accept(broker);
        broker.start();
        broker.waitUntilStarted();
        uri = connector.getConnectUri();
    }

    void stop() throws Exception {
        if (broker != null) {
            broker.stop();
            broker.waitUntilStopped();
            broker = null;
        }
    }

    void restart() throws Exception {
        stop();
        start(false);
    }

    ActiveMQConnectionFactory factory() {
        ActiveMQConnectionFactory f = new ActiveMQConnectionFactory(uri);
        f.setWatchTopicAdvisories(false);
        RedeliveryPolicy p = f.getRedeliveryPolicy();
        p.setInitialRedeliveryDelay(0);
        p.setRedeliveryDelay(0);
        return f;
    }

    ActiveMQXAConnectionFactory xaFactory() {
        ActiveMQXAConnectionFactory f = new ActiveMQXAConnectionFactory(uri);
        f.setWatchTopicAdvisories(false);
        return f;
    }

    @Override
    public void close() {
        try {
            stop();
        } catch (Exception e) {
            throw new IllegalStateException("stopping broker " + name, e);
        }
    }
}
