package dev.kahadb.activemq;

import java.io.IOException;

/**
 * Runs a {@link ReplicatedBroker} from the command line until the process is stopped (SIGTERM or
 * Ctrl-C stop the broker, then the node) or its broker fails to start (exit status 1).
 *
 * <pre>
 * HaLauncher [--config ha.xml] [--brokerURI xbean:ha-broker.xml] [--uri kdbr://host:port]
 *     [--directory DIR] [--minimumReplicas N] [--zookeeper host:port[,...]|none]
 *     [--zookeeperPath /kahadb-rs/NAME] [--sessionTimeout MS] [--transferSessions N]
 *     [--cluster NAME] [--replicationTimeout MS]
 * </pre>
 *
 * Flags override the attributes of {@code ha.xml}. A configuration error is reported on
 * standard error with exit status 2, before anything starts.
 */
public final class HaLauncher {
    private HaLauncher() {
    }

    static String usage() {
        return "usage: kahadb-ha [--config ha.xml] [--brokerURI xbean:ha-broker.xml|broker:(tcp://...)] "
                + "[--uri kdbr://host:port] [--directory DIR] [--minimumReplicas N] "
                + "[--zookeeper host:port[,...]|none] [--zookeeperPath /kahadb-rs/NAME] [--sessionTimeout MS] "
                + "[--transferSessions N] [--cluster NAME] [--replicationTimeout MS]";
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 1 && (args[0].equals("-h") || args[0].equals("--help"))) {
            System.out.println(usage());
            return;
        }
        ReplicatedBroker rb;
        try {
            ReplicatedBrokerConfig config = ReplicatedBrokerConfig.fromArgs(args);
            rb = ReplicatedBroker.start(config);
        } catch (IllegalArgumentException e) {
            System.err.println("kahadb-ha: configuration error: " + e.getMessage());
            System.err.println(usage());
            System.exit(2);
            return;
        } catch (IOException e) {
            System.err.println("kahadb-ha: " + e.getMessage());
            System.exit(1);
            return;
        }
        Runtime.getRuntime().addShutdownHook(new Thread(rb::close, "kahadb-ha shutdown"));
        System.out.println("kahadb-ha: node " + rb.getUri() + " joined the election (zookeeper " + rb.getZookeeper()
                + "); JMX " + rb.objectName());
        System.out.flush();
        String why = rb.failure().get();
        System.err.println("kahadb-ha: " + why);
        System.exit(1);
    }
}
