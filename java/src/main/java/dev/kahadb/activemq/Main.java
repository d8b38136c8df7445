package dev.kahadb.activemq;

import java.io.File;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

import org.apache.activemq.broker.BrokerService;
import org.apache.activemq.broker.TransportConnector;

/**
 * Runs an ActiveMQ Classic broker whose persistence adapter is kahadb-rs, until the process is
 * stopped (SIGTERM or Ctrl-C stop the broker cleanly: the store is checkpointed and closed).
 *
 * <pre>
 * java -cp ... dev.kahadb.activemq.Main [--uri tcp://127.0.0.1:61616] [--data data/broker]
 *     [--name kahadb-rs] [--sync always|periodic|never] [--jmx]
 * </pre>
 *
 * Each option can also be given as a system property: {@code kahadb.broker.uri},
 * {@code kahadb.broker.data}, {@code kahadb.broker.name}, {@code kahadb.broker.sync},
 * {@code kahadb.broker.jmx}. The store lives in {@code <data>/kahadb-rs} (the broker's temporary
 * store for non-persistent overflow in {@code <data>/tmp_storage}). Once the broker
 * listens, a line {@code kahadb-rs broker started on <uri>} is printed to standard output.
 */
public final class Main {
    public static final String DEFAULT_URI = "tcp://127.0.0.1:61616";
    public static final String DEFAULT_DATA = "data/broker";
    public static final String DEFAULT_NAME = "kahadb-rs";

    private Main() {
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> opts = new LinkedHashMap<>();
        opts.put("uri", System.getProperty("kahadb.broker.uri", DEFAULT_URI));
        opts.put("data", System.getProperty("kahadb.broker.data", DEFAULT_DATA));
        opts.put("name", System.getProperty("kahadb.broker.name", DEFAULT_NAME));
        opts.put("sync", System.getProperty("kahadb.broker.sync", "always"));
        opts.put("jmx", System.getProperty("kahadb.broker.jmx", "false"));
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

        BrokerService broker = createBroker(opts.get("name"), new File(opts.get("data")), opts.get("uri"),
                opts.get("sync"), Boolean.parseBoolean(opts.get("jmx")));
        broker.start();
        if (!broker.waitUntilStarted()) {
            System.err.println("the broker did not start");
            System.exit(1);
        }
        TransportConnector connector = broker.getTransportConnectors().get(0);
        System.out.println("kahadb-rs broker started on " + connector.getPublishableConnectString() + " (data in "
                + new File(opts.get("data")).getAbsoluteFile() + "); stop with Ctrl-C or SIGTERM");
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
                + DEFAULT_NAME + "] [--sync always|periodic|never] [--jmx]");
    }
}
