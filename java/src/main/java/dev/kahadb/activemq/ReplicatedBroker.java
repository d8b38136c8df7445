package dev.kahadb.activemq;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.time.Instant;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

import javax.management.JMException;
import javax.management.MBeanServer;
import javax.management.ObjectName;

import org.apache.activemq.broker.BrokerService;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import dev.kahadb.ElectedNode;
import dev.kahadb.ElectionListener;
import dev.kahadb.ElectionOptions;
import dev.kahadb.KahaDBException;
import dev.kahadb.Node;
import dev.kahadb.NodeStatus;

/**
 * The HA launcher: a replication node in an election, and the ActiveMQ broker of
 * {@code brokerURI} running on the node's store while (and only while) the node is master.
 *
 * <ul>
 *   <li>{@link #start(ReplicatedBrokerConfig)} checks every attribute and the broker config
 *       ({@link ReplicatedBrokerRules}: created once, not started, then discarded), registers
 *       the MBean and joins the election; a failure at any of these steps undoes the earlier
 *       ones and throws, with nothing left running.
 *   <li>On becoming master it creates a fresh broker from {@code brokerURI}, injects
 *       {@link KahaRsPersistenceAdapter} on the node ({@code setNode}) and starts it, on a
 *       thread of its own (election events keep flowing meanwhile). A broker that fails to
 *       start makes this node leave the election (so that another node can serve):
 *       {@link #failure()} completes and the launcher exits.
 *   <li>On becoming slave or stopped it stops that broker at once, on the event's thread.
 * </ul>
 */
public final class ReplicatedBroker implements ReplicatedBrokerMBean, AutoCloseable {
    static final Logger LOG = LoggerFactory.getLogger(ReplicatedBroker.class);

    private final ReplicatedBrokerConfig config;
    private final URI checkedBrokerUri;
    /** The context class loader of the thread that started the launcher. */
    private final ClassLoader loader;
    private final ExecutorService control;
    private final CompletableFuture<ElectedNode> elected = new CompletableFuture<>();
    private final CompletableFuture<String> failure = new CompletableFuture<>();
    private final Object lock = new Object();
    /** Bumped by every event and by close: a broker start of an older generation is undone. */
    private long generation;
    private BrokerService broker;
    /**
     * An {@code xbean:} broker created ahead, not started, for the next promotion (building it
     * from its Spring config is a good part of a broker's start); touched on the control thread
     * only, and after it ended.
     */
    private BrokerService prepared;
    private boolean closed;
    private ObjectName objectName;

    private volatile String role = Node.Role.STOPPED.name();
    private volatile long epoch;
    private volatile String masterUri;
    private volatile String lastEvent;
    private volatile String lastError;

    private ReplicatedBroker(ReplicatedBrokerConfig config, URI checkedBrokerUri) {
        this.config = config;
        this.checkedBrokerUri = checkedBrokerUri;
        ClassLoader cl = Thread.currentThread().getContextClassLoader();
        this.loader = cl != null ? cl : ReplicatedBroker.class.getClassLoader();
        this.control = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "kahadb-ha broker " + config.getUri());
            t.setDaemon(true);
            t.setContextClassLoader(loader);
            return t;
        });
    }

    /**
     * Events arrive on a thread the native library attached to the JVM, without a context class
     * loader; Spring (an xbean: broker's context) needs one.
     */
    private void useLoader() {
        Thread t = Thread.currentThread();
        if (t.getContextClassLoader() == null) {
            t.setContextClassLoader(loader);
        }
    }

    /**
     * Checks the configuration and the broker config, registers the MBean and joins the
     * election.
     *
     * @throws IllegalArgumentException a bad attribute, or a broker config that breaks a rule
     *     ({@link ReplicatedBrokerRules}); nothing was started
     * @throws IOException the node or the election could not start (a locked directory, an
     *     unreachable ZooKeeper, ...); nothing was left running
     */
    public static ReplicatedBroker start(ReplicatedBrokerConfig config) throws IOException {
        config.validate();
        URI checked = ReplicatedBrokerRules.check(config.getBrokerURI(), config.getBaseDirectory());
        // Load it once now, so a config that cannot be created fails here and not on promotion.
        ReplicatedBrokerRules.validate(config.getBrokerURI(), checked);
        if (!config.isStatic()) {
            checkZooKeeperReachable(config);
        }
        ReplicatedBroker rb = new ReplicatedBroker(config, checked);
        try {
            rb.registerMBean();
        } catch (JMException e) {
            rb.control.shutdownNow();
            throw new IOException("cannot register the JMX MBean of " + config.getUri() + ": " + e, e);
        }
        rb.prepareLater();
        LOG.info("kahadb-ha: joining the election as {} ({})", config.getUri(), config);
        try {
            rb.elected.complete(ElectedNode.start(config.nodeOptions(), electionOptions(config), rb.listener));
        } catch (IOException | RuntimeException e) {
            rb.elected.completeExceptionally(e);
            rb.close();
            String where = config.isStatic() ? "the static elector"
                    : "ZooKeeper at " + config.getZookeeper();
            throw new IOException("kahadb-ha: node " + config.getUri() + " could not join the election (" + where
                    + "): " + e.getMessage(), e);
        }
        return rb;
    }

    /**
     * Fails unless at least one server of the ZooKeeper connect string accepts a TCP connection
     * within the session timeout (at most 5 s each): an unreachable ZooKeeper is a clear error at
     * start rather than a node that never gets elected.
     */
    static void checkZooKeeperReachable(ReplicatedBrokerConfig config) throws IOException {
        String servers = config.getZookeeper().trim();
        int slash = servers.indexOf('/');
        if (slash >= 0) {
            servers = servers.substring(0, slash);
        }
        int timeout = (int) Math.min(5_000, Math.max(100, config.getSessionTimeout()));
        StringBuilder errors = new StringBuilder();
        for (String server : servers.split(",")) {
            String s = server.trim();
            String host = s;
            int port = 2181;
            int colon = s.lastIndexOf(':');
            if (colon > 0 && s.indexOf(']') < colon) {
                host = s.substring(0, colon);
                port = Integer.parseInt(s.substring(colon + 1));
            }
            if (host.startsWith("[") && host.endsWith("]")) {
                host = host.substring(1, host.length() - 1);
            }
            try (Socket socket = new Socket()) {
                socket.connect(new InetSocketAddress(host, port), timeout);
                return;
            } catch (IOException e) {
                errors.append(errors.length() == 0 ? "" : "; ").append(s).append(": ").append(e.getMessage());
            }
        }
        throw new IOException("ZooKeeper is unreachable at " + config.getZookeeper() + " (" + errors
                + "); nothing was started");
    }

    /** The election's options. */
    static ElectionOptions electionOptions(ReplicatedBrokerConfig config) {
        ElectionOptions e = new ElectionOptions();
        if (!config.isStatic()) {
            e.zookeeper(config.getZookeeper().trim()).sessionTimeoutMillis(config.getSessionTimeout());
            if (config.getZookeeperPath() != null) {
                e.path(config.getZookeeperPath());
            }
        }
        return e;
    }

    /** Completes with the reason when this node left the election because its broker failed. */
    public CompletableFuture<String> failure() {
        return failure;
    }

    /** The JMX name. */
    public ObjectName objectName() {
        return objectName;
    }

    /** The broker running now (this node is master), or null. */
    public BrokerService broker() {
        synchronized (lock) {
            return broker;
        }
    }

    /** The node, once the election started. */
    public Node node() {
        ElectedNode e = electedNode();
        return e == null ? null : e.node();
    }

    private ElectedNode electedNode() {
        try {
            return elected.getNow(null);
        } catch (RuntimeException e) {
            return null;
        }
    }

    /** The events, as the election delivers them (package-private for tests). */
    final ElectionListener listener = listener();

    private ElectionListener listener() {
        return new ElectionListener() {
            @Override
            public void becameMaster(long e) {
                useLoader();
                event("became master at epoch " + e);
                role = Node.Role.MASTER.name();
                epoch = e;
                masterUri = config.getUri();
                long g;
                synchronized (lock) {
                    if (closed) {
                        return;
                    }
                    g = ++generation;
                }
                control.execute(() -> startBroker(g, e));
            }

            @Override
            public void statusChanged(NodeStatus s) {
                if (s.role() == Node.Role.MASTER) {
                    LOG.info("kahadb-ha {}: replication: {} live slave(s) of {} (minimumReplicas {}){}", config.getUri(),
                            s.liveSlaves(), s.slaves().size(), s.minimumReplicas(), slaveList(s));
                } else if (s.role() == Node.Role.SLAVE) {
                    LOG.info("kahadb-ha {}: replication: link to {} {}", config.getUri(), s.master(),
                            s.link() == null ? "down" : s.link().name().toLowerCase(java.util.Locale.ROOT));
                }
            }

            @Override
            public void becameSlave(String master, long e) {
                useLoader();
                event("became slave of " + master + " at epoch " + e);
                role = Node.Role.SLAVE.name();
                epoch = e;
                masterUri = master;
                stopBroker("this node is now a slave of " + master);
            }

            @Override
            public void stopped(String reason) {
                useLoader();
                event("stopped: " + reason);
                role = Node.Role.STOPPED.name();
                masterUri = null;
                stopBroker("the node stopped: " + reason);
            }
        };
    }

    private static String slaveList(NodeStatus s) {
        StringBuilder b = new StringBuilder();
        for (NodeStatus.Slave x : s.slaves()) {
            b.append(b.length() == 0 ? ": " : ", ").append(x.node()).append(' ')
                    .append(x.state().name().toLowerCase(java.util.Locale.ROOT));
        }
        return b.toString();
    }

    private void event(String what) {
        lastEvent = Instant.now() + " " + what;
        LOG.info("kahadb-ha {}: {}", config.getUri(), what);
    }

    private void startBroker(long g, long e) {
        ElectedNode en;
        try {
            en = elected.join();
        } catch (RuntimeException ex) {
            return;
        }
        synchronized (lock) {
            if (g != generation) {
                return;
            }
        }
        BrokerService b = prepared;
        prepared = null;
        try {
            if (b == null) {
                b = ReplicatedBrokerRules.create(config.getBrokerURI(), checkedBrokerUri);
            }
            KahaRsPersistenceAdapter adapter = new KahaRsPersistenceAdapter();
            adapter.setNode(en.node());
            // What the broker reports and checks disk space against: the node's directory.
            adapter.setDirectory(en.node().directory().toFile());
            b.setPersistenceAdapter(adapter);
            // An xbean broker already pointed its store usage at the default adapter.
            b.getSystemUsage().getStoreUsage().setStore(adapter);
            // The launcher stops the broker (then the node) at shutdown.
            b.setUseShutdownHook(false);
        } catch (Exception | Error ex) {
            // An Error too (a class that cannot be loaded, no memory): left uncaught it would end
            // this thread and leave the node master, with no broker, for good.
            resign("the broker of " + config.getBrokerURI() + " cannot be created: " + ex);
            return;
        }
        synchronized (lock) {
            if (g != generation) {
                ReplicatedBrokerRules.discard(b);
                return;
            }
            broker = b;
        }
        LOG.info("kahadb-ha {}: starting broker {} (epoch {})", config.getUri(), b.getBrokerName(), e);
        Throwable failed = null;
        try {
            b.start();
            if (!b.waitUntilStarted()) {
                failed = new IOException("the broker did not start");
            }
        } catch (Exception | Error ex) {
            failed = ex;
        }
        boolean superseded;
        synchronized (lock) {
            superseded = g != generation;
            if (failed != null && !superseded) {
                broker = null;
            }
        }
        if (superseded) {
            // A later event stopped (or is stopping) it; make sure it is down.
            ReplicatedBrokerRules.dispose(b);
        } else if (failed != null) {
            ReplicatedBrokerRules.dispose(b);
            resign("the broker of " + config.getBrokerURI() + " failed to start: " + failed);
        } else {
            LOG.info("kahadb-ha {}: broker {} started, master at epoch {}", config.getUri(), b.getBrokerName(), e);
        }
    }

    /**
     * Creates the broker of the next promotion ahead of time (control thread). Only for an
     * {@code xbean:} config: a {@code broker:} URI's connectors would bind the clients' port on
     * a node that is not master. A failure is left for the promotion to report.
     */
    private void prepare() {
        synchronized (lock) {
            if (closed || broker != null) {
                return;
            }
        }
        if (prepared != null || !"xbean".equals(checkedBrokerUri.getScheme())) {
            return;
        }
        try {
            prepared = ReplicatedBrokerRules.create(config.getBrokerURI(), checkedBrokerUri);
        } catch (RuntimeException | Error e) {
            LOG.debug("kahadb-ha {}: preparing the broker: {}", config.getUri(), e.toString());
        }
    }

    private void prepareLater() {
        try {
            control.execute(this::prepare);
        } catch (java.util.concurrent.RejectedExecutionException e) {
            // closing
        }
    }

    private void stopBroker(String why) {
        BrokerService b;
        synchronized (lock) {
            generation++;
            b = broker;
            broker = null;
        }
        if (b != null) {
            LOG.info("kahadb-ha {}: stopping broker {}: {}", config.getUri(), b.getBrokerName(), why);
            ReplicatedBrokerRules.dispose(b);
            prepareLater();
        }
    }

    /** A master that cannot serve leaves the election, so that another node is elected. */
    private void resign(String why) {
        lastError = Instant.now() + " " + why;
        LOG.error("kahadb-ha {}: {}; leaving the election", config.getUri(), why);
        Thread t = new Thread(() -> {
            close();
            failure.complete(why);
        }, "kahadb-ha resign " + config.getUri());
        t.start();
    }

    /** Stops the broker, leaves the election, stops the node and unregisters the MBean; idempotent. */
    @Override
    public void close() {
        synchronized (lock) {
            if (closed) {
                return;
            }
            closed = true;
        }
        stopBroker("closing");
        control.shutdown();
        try {
            if (!control.awaitTermination(60, TimeUnit.SECONDS)) {
                LOG.warn("kahadb-ha {}: the broker start did not end in 60 s", config.getUri());
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        stopBroker("closing");
        if (control.isTerminated() && prepared != null) {
            ReplicatedBrokerRules.discard(prepared);
            prepared = null;
        }
        ElectedNode en = electedNode();
        if (en != null) {
            en.close();
        }
        role = Node.Role.STOPPED.name();
        unregisterMBean();
        LOG.info("kahadb-ha {}: closed", config.getUri());
    }

    private void registerMBean() throws JMException {
        MBeanServer server = ManagementFactory.getPlatformMBeanServer();
        ObjectName name = new ObjectName("dev.kahadb:type=ReplicatedBroker,name=" + ObjectName.quote(config.getUri()));
        server.registerMBean(this, name);
        objectName = name;
    }

    private void unregisterMBean() {
        ObjectName name = objectName;
        if (name != null) {
            try {
                ManagementFactory.getPlatformMBeanServer().unregisterMBean(name);
            } catch (JMException e) {
                LOG.debug("unregistering {}: {}", name, e.toString());
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // MBean

    private NodeStatus status() {
        Node n = node();
        if (n == null) {
            return null;
        }
        try {
            return n.status();
        } catch (KahaDBException e) {
            return null;
        }
    }

    @Override
    public String getRole() {
        return role;
    }

    @Override
    public long getEpoch() {
        return epoch;
    }

    @Override
    public String getMasterUri() {
        return masterUri;
    }

    @Override
    public String getUri() {
        return config.getUri();
    }

    @Override
    public String getDirectory() {
        return config.getDirectory().getAbsolutePath();
    }

    @Override
    public String getBrokerURI() {
        return config.getBrokerURI();
    }

    @Override
    public String getZookeeper() {
        return config.isStatic() ? ReplicatedBrokerConfig.NO_ZOOKEEPER : config.getZookeeper();
    }

    @Override
    public boolean isBrokerStarted() {
        BrokerService b = broker();
        return b != null && b.isStarted();
    }

    @Override
    public int getMinimumReplicas() {
        NodeStatus s = status();
        return s == null ? config.getMinimumReplicas() : (int) s.minimumReplicas();
    }

    @Override
    public void setMinimumReplicas(int minimumReplicas) {
        Node n = node();
        if (n == null) {
            throw new IllegalStateException("the node is not running");
        }
        try {
            n.setMinimumReplicas(minimumReplicas);
        } catch (KahaDBException e) {
            throw new IllegalArgumentException(e.getMessage(), e);
        }
    }

    @Override
    public long getLiveSlaves() {
        NodeStatus s = status();
        return s == null ? 0 : s.liveSlaves();
    }

    @Override
    public String[] getSlaves() {
        NodeStatus s = status();
        if (s == null) {
            return new String[0];
        }
        return s.slaves().stream()
                .map(x -> x.node() + " " + x.state() + " lag=" + x.lagBytes()
                        + (x.reason() == null ? "" : " reason=" + x.reason()))
                .toArray(String[]::new);
    }

    @Override
    public String getLinkState() {
        NodeStatus s = status();
        return s == null || s.link() == null ? null : s.link().name();
    }

    @Override
    public String getReplicationStatus() {
        Node n = node();
        if (n == null) {
            return null;
        }
        try {
            return n.statusJson();
        } catch (KahaDBException e) {
            return null;
        }
    }

    @Override
    public String getLastEvent() {
        return lastEvent;
    }

    @Override
    public String getLastError() {
        return lastError;
    }

    @Override
    public String toString() {
        return "ReplicatedBroker[" + config.getUri() + ", " + role + ", epoch " + epoch + "]";
    }
}
