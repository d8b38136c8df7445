package dev.kahadb.activemq;

import java.io.File;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

import dev.kahadb.JournalOptions;
import dev.kahadb.Node;
import dev.kahadb.NodeOptions;
import dev.kahadb.StoreOptions;
import org.apache.activemq.broker.BrokerService;
import org.apache.activemq.broker.TransportConnector;

/**
 * Runs an ActiveMQ Classic broker whose persistence adapter is kahadb-rs, until the process is
 * stopped (SIGTERM or Ctrl-C stop the broker cleanly: the store is checkpointed and closed).
 *
 * <pre>
 * java -cp ... dev.kahadb.activemq.Main [--uri tcp://127.0.0.1:61616] [--data data/broker]
 *     [--name kahadb-rs] [--sync always|periodic|never] [--jmx]
 *     [--replication kdbr://127.0.0.1:61617|none] [--min-replicas 0]
 * </pre>
 *
 * Each option can also be given as a system property: {@code kahadb.broker.uri},
 * {@code kahadb.broker.data}, {@code kahadb.broker.name}, {@code kahadb.broker.sync},
 * {@code kahadb.broker.jmx}, {@code kahadb.broker.replication},
 * {@code kahadb.broker.min-replicas}. The store lives in {@code <data>/kahadb-rs} (the broker's
 * temporary store for non-persistent overflow in {@code <data>/tmp_storage}). Once the broker
 * listens, a line {@code kahadb-rs broker started on <uri>} is printed to standard output.
 *
 * <p>By default the store is a replication node, master of a cluster of one (the embedded
 * default: no election service, the node takes the next epoch itself), listening for slaves on
 * {@code --replication}; slaves can join at any time ({@code kahadb-node --slave-of <that uri>}),
 * and {@code --min-replicas N} makes persistent sends wait for N of them. {@code --replication
 * none} opens the store without replication.
 */
public final class Main {
    public static final String DEFAULT_URI = "tcp://127.0.0.1:61616";
    public static final String DEFAULT_DATA = "data/broker";
    public static final String DEFAULT_NAME = "kahadb-rs";
    public static final String DEFAULT_REPLICATION = "kdbr://127.0.0.1:61617";

    private Main() {
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> opts = new LinkedHashMap<>();
        opts.put("uri", System.getProperty("kahadb.broker.uri", DEFAULT_URI));
        opts.put("data", System.getProperty("kahadb.broker.data", DEFAULT_DATA));
        opts.put("name", System.getProperty("kahadb.broker.name", DEFAULT_NAME));
        opts.put("sync", System.getProperty("kahadb.broker.sync", "always"));
        opts.put("jmx", System.getProperty("kahadb.broker.jmx", "false"));
        opts.put("replication", System.getProperty("kahadb.broker.replication", DEFAULT_REPLICATION));
        opts.put("min-replicas", System.getProperty("kahadb.broker.min-replicas", "0"));
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.equals("-h") || a.equals("--help")) {
                usage();
                return;
            }
            if (!a.startsWith("--")) {
                System.err.println("unexpected argument: " + a);
                usage();
                System.exit(2);
            }
            String key = a.substring(2);
            String value;
            int eq = key.indexOf('=');
            if (eq >= 0) {
                value = key.substring(eq + 1);
                key = key.substring(0, eq);
            } else if (key.equals("jmx")) {
                value = "true";
            } else if (i + 1 < args.length) {
                value = args[++i];
            } else {
                System.err.println("missing value for --" + key);
                System.exit(2);
                return;
            }
            if (!opts.containsKey(key)) {
                System.err.println("unknown option --" + key);
                usage();
                System.exit(2);
            }
            opts.put(key, value);
        }

        File data = new File(opts.get("data"));
        BrokerService broker = createBroker(opts.get("name"), data, opts.get("uri"),
                opts.get("sync"), Boolean.parseBoolean(opts.get("jmx")));
        String replication = opts.get("replication");
        Node node = null;
        if (!replication.equals("none")) {
            int min;
            try {
                min = Integer.parseInt(opts.get("min-replicas"));
            } catch (NumberFormatException e) {
                System.err.println("--min-replicas must be a number, not " + opts.get("min-replicas"));
                System.exit(2);
                return;
            }
            KahaRsPersistenceAdapter adapter = (KahaRsPersistenceAdapter) broker.getPersistenceAdapter();
            node = Node.open(new NodeOptions().directory(new File(data, "kahadb-rs").toPath()).uri(replication)
                    .minimumReplicas(min).store(new StoreOptions().journal(new JournalOptions()
                            .syncStrategy(JournalOptions.SyncStrategy.valueOf(opts.get("sync").toUpperCase(Locale.ROOT))))));
            // A cluster of one: the node takes the next epoch itself.
            node.startMaster(node.epoch() + 1);
            adapter.setNode(node);
            Node n = node;
            // After the broker's own shutdown hook has stopped it, the node closes its store.
            Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                try {
                    broker.stop();
                    broker.waitUntilStopped();
                    n.close();
                } catch (Exception e) {
                    System.err.println("closing the replication node: " + e);
                }
            }, "kahadb-rs node shutdown"));
        }
        broker.start();
        if (!broker.waitUntilStarted()) {
            System.err.println("the broker did not start");
            System.exit(1);
        }
        TransportConnector connector = broker.getTransportConnectors().get(0);
        System.out.println("kahadb-rs broker started on " + connector.getPublishableConnectString() + " (data in "
                + data.getAbsoluteFile() + "); stop with Ctrl-C or SIGTERM");
        if (node != null) {
            System.out.println("replication: master at epoch " + node.epoch() + " on " + replication
                    + " (minimumReplicas " + opts.get("min-replicas") + "); slaves join with kahadb-node --slave-of "
                    + replication);
        }
        System.out.flush();
        // The broker's shutdown hook stops it on SIGTERM/SIGINT; then this returns.
        broker.waitUntilStopped();
    }

    /** A broker with the kahadb-rs adapter in {@code <data>/kahadb-rs}, listening on {@code uri}. */
    public static BrokerService createBroker(String name, File data, String uri, String sync, boolean jmx)
            throws Exception {
        BrokerService broker = new BrokerService();
        broker.setBrokerName(name);
        broker.setDataDirectoryFile(data);
        broker.setTmpDataDirectory(new File(data, "tmp_storage"));
        broker.setUseJmx(jmx);
        broker.setUseShutdownHook(true);
        broker.setPersistent(true);
        KahaRsPersistenceAdapter adapter = new KahaRsPersistenceAdapter();
        adapter.setDirectory(new File(data, "kahadb-rs"));
        adapter.setJournalDiskSyncStrategy(sync.toLowerCase(Locale.ROOT));
        broker.setPersistenceAdapter(adapter);
        broker.addConnector(uri);
        return broker;
    }

    private static void usage() {
        System.err.println("usage: Main [--uri " + DEFAULT_URI + "] [--data " + DEFAULT_DATA + "] [--name "
                + DEFAULT_NAME + "] [--sync always|periodic|never] [--jmx] [--replication " + DEFAULT_REPLICATION
                + "|none] [--min-replicas 0]");
    }
}
