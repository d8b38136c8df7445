package dev.kahadb.activemq;

import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import javax.xml.XMLConstants;
import javax.xml.parsers.DocumentBuilder;
import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.parsers.ParserConfigurationException;

import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NamedNodeMap;
import org.w3c.dom.NodeList;
import org.xml.sax.SAXException;

import dev.kahadb.NodeOptions;

/**
 * The attributes of a {@link ReplicatedBroker}, the equivalent of the {@code kahadbReplication}
 * element: set them with the setters, from an {@code ha.xml} ({@link #fromXml(File)}) or from
 * command-line flags ({@link #applyFlag(String, String)}). {@link #validate()} checks them all
 * before anything starts.
 *
 * <p>{@code ha.xml} is a small XML file of this project's own (not a Spring file): one
 * {@code <kahadbReplication>} element, anywhere in the document (the namespace is not checked),
 * whose attributes are the names below. Unknown attributes are an error.
 */
public final class ReplicatedBrokerConfig {
    /** The ZooKeeper address used when none is given. */
    public static final String DEFAULT_ZOOKEEPER = "127.0.0.1:2181";
    /** The value of {@code zookeeper} that selects the static elector (one node, no ZooKeeper). */
    public static final String NO_ZOOKEEPER = "none";
    public static final long DEFAULT_SESSION_TIMEOUT = 10_000;

    static final Pattern KDBR_URI = Pattern.compile("kdbr://(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9._-]+):([0-9]{1,5})");

    /** The attribute names, as in {@code ha.xml} and as command-line flags ({@code --name}). */
    static final String[] ATTRIBUTES = {"brokerURI", "uri", "directory", "minimumReplicas", "zookeeper",
        "zookeeperPath", "sessionTimeout", "transferSessions", "cluster", "replicationTimeout"};

    private String brokerURI;
    private String uri;
    private File directory;
    private int minimumReplicas;
    private String zookeeper = DEFAULT_ZOOKEEPER;
    private String zookeeperPath;
    private long sessionTimeout = DEFAULT_SESSION_TIMEOUT;
    private int transferSessions = NodeOptions.DEFAULT_TRANSFER_SESSIONS;
    private String cluster = NodeOptions.DEFAULT_CLUSTER;
    private long replicationTimeout = NodeOptions.DEFAULT_REPLICATION_TIMEOUT_MILLIS;
    /** Where relative {@code xbean:} files are looked up first: the directory of ha.xml. */
    private File baseDirectory;

    public ReplicatedBrokerConfig() {
    }

    // ----------------------------------------------------------------------------------------
    // Attributes

    /** The broker started on promotion: {@code xbean:FILE.xml}, {@code xbean:classpath:...} or {@code broker:(...)?...}. */
    public String getBrokerURI() {
        return brokerURI;
    }

    public ReplicatedBrokerConfig setBrokerURI(String value) {
        this.brokerURI = value;
        return this;
    }

    /** This node's replication address, {@code kdbr://host:port}. */
    public String getUri() {
        return uri;
    }

    public ReplicatedBrokerConfig setUri(String value) {
        this.uri = value;
        return this;
    }

    /** The node's directory (journal, index, replication state). */
    public File getDirectory() {
        return directory;
    }

    public ReplicatedBrokerConfig setDirectory(File value) {
        this.directory = value;
        return this;
    }

    /** Live slaves a synchronous write waits for. */
    public int getMinimumReplicas() {
        return minimumReplicas;
    }

    public ReplicatedBrokerConfig setMinimumReplicas(int value) {
        this.minimumReplicas = value;
        return this;
    }

    /** ZooKeeper connect string, or {@value #NO_ZOOKEEPER} for the static elector. */
    public String getZookeeper() {
        return zookeeper;
    }

    public ReplicatedBrokerConfig setZookeeper(String value) {
        this.zookeeper = value;
        return this;
    }

    /** The cluster's root znode; null for the default {@code /kahadb-rs/<cluster>}. */
    public String getZookeeperPath() {
        return zookeeperPath;
    }

    public ReplicatedBrokerConfig setZookeeperPath(String value) {
        this.zookeeperPath = value;
        return this;
    }

    /** ZooKeeper session timeout in milliseconds. */
    public long getSessionTimeout() {
        return sessionTimeout;
    }

    public ReplicatedBrokerConfig setSessionTimeout(long millis) {
        this.sessionTimeout = millis;
        return this;
    }

    /** Concurrent transfer sessions of a slave's initial sync (1 to 64). */
    public int getTransferSessions() {
        return transferSessions;
    }

    public ReplicatedBrokerConfig setTransferSessions(int value) {
        this.transferSessions = value;
        return this;
    }

    /** The cluster name (nodes of other clusters are refused). */
    public String getCluster() {
        return cluster;
    }

    public ReplicatedBrokerConfig setCluster(String value) {
        this.cluster = value;
        return this;
    }

    /** How long a synchronous write waits for {@code minimumReplicas} slaves, in milliseconds. */
    public long getReplicationTimeout() {
        return replicationTimeout;
    }

    public ReplicatedBrokerConfig setReplicationTimeout(long millis) {
        this.replicationTimeout = millis;
        return this;
    }

    File getBaseDirectory() {
        return baseDirectory;
    }

    ReplicatedBrokerConfig setBaseDirectory(File dir) {
        this.baseDirectory = dir;
        return this;
    }

    /** Whether the static elector is used (no ZooKeeper). */
    public boolean isStatic() {
        return zookeeper == null || zookeeper.isBlank() || zookeeper.trim().equalsIgnoreCase(NO_ZOOKEEPER);
    }

    // ----------------------------------------------------------------------------------------
    // Reading

    /**
     * Sets the attribute {@code name} (an entry of {@link #ATTRIBUTES}) from its text.
     *
     * @throws IllegalArgumentException for an unknown name or a value that is not a number
     */
    public ReplicatedBrokerConfig applyFlag(String name, String value) {
        String v = value.trim();
        switch (name) {
            case "brokerURI":
                return setBrokerURI(v);
            case "uri":
                return setUri(v);
            case "directory":
                return setDirectory(new File(v));
            case "minimumReplicas":
                return setMinimumReplicas(integer(name, v));
            case "zookeeper":
                return setZookeeper(v);
            case "zookeeperPath":
                return setZookeeperPath(v.isEmpty() ? null : v);
            case "sessionTimeout":
                return setSessionTimeout(number(name, v));
            case "transferSessions":
                return setTransferSessions(integer(name, v));
            case "cluster":
                return setCluster(v);
            case "replicationTimeout":
                return setReplicationTimeout(number(name, v));
            default:
                throw new IllegalArgumentException("unknown attribute '" + name + "' (known: "
                        + String.join(", ", ATTRIBUTES) + ")");
        }
    }

    private static long number(String name, String v) {
        try {
            return Long.parseLong(v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(name + " must be a number (milliseconds), not '" + v + "'");
        }
    }

    private static int integer(String name, String v) {
        try {
            return Integer.parseInt(v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(name + " must be a whole number, not '" + v + "'");
        }
    }

    /**
     * Reads {@code ha.xml}: the attributes of its {@code <kahadbReplication>} element. A relative
     * {@code xbean:} file in {@code brokerURI} is looked up next to {@code ha.xml} first.
     *
     * @throws IOException when the file cannot be read or is not such a file
     * @throws IllegalArgumentException for an unknown attribute or a bad number
     */
    public static ReplicatedBrokerConfig fromXml(File file) throws IOException {
        Document doc = parseXml(file);
        NodeList found = doc.getElementsByTagNameNS("*", "kahadbReplication");
        if (found.getLength() != 1) {
            throw new IOException(file + ": expected one <kahadbReplication> element, found " + found.getLength());
        }
        Element e = (Element) found.item(0);
        ReplicatedBrokerConfig config = new ReplicatedBrokerConfig();
        NamedNodeMap attrs = e.getAttributes();
        for (int i = 0; i < attrs.getLength(); i++) {
            org.w3c.dom.Node a = attrs.item(i);
            String name = a.getLocalName() != null ? a.getLocalName() : a.getNodeName();
            if (a.getNodeName().startsWith("xmlns") || XMLConstants.XMLNS_ATTRIBUTE_NS_URI.equals(a.getNamespaceURI())
                    || XMLConstants.W3C_XML_SCHEMA_INSTANCE_NS_URI.equals(a.getNamespaceURI())) {
                continue;
            }
            try {
                config.applyFlag(name, a.getNodeValue());
            } catch (IllegalArgumentException ex) {
                throw new IllegalArgumentException(file + ": " + ex.getMessage(), ex);
            }
        }
        config.setBaseDirectory(file.getAbsoluteFile().getParentFile());
        return config;
    }

    /**
     * Builds the configuration from command-line flags: {@code --config ha.xml} reads that file
     * first, then {@code --NAME VALUE} or {@code --NAME=VALUE} set the attributes of
     * {@link #ATTRIBUTES} (overriding the file's).
     *
     * @throws IOException when ha.xml cannot be read
     * @throws IllegalArgumentException for an unknown flag or a bad number
     */
    public static ReplicatedBrokerConfig fromArgs(String[] args) throws IOException {
        File xml = null;
        List<String[]> flags = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (!a.startsWith("--")) {
                throw new IllegalArgumentException("unexpected argument '" + a + "'");
            }
            String key = a.substring(2);
            String value;
            int eq = key.indexOf('=');
            if (eq >= 0) {
                value = key.substring(eq + 1);
                key = key.substring(0, eq);
            } else if (i + 1 < args.length) {
                value = args[++i];
            } else {
                throw new IllegalArgumentException("missing value for --" + key);
            }
            if (key.equals("config")) {
                xml = new File(value);
            } else if (Arrays.asList(ATTRIBUTES).contains(key)) {
                flags.add(new String[] {key, value});
            } else {
                throw new IllegalArgumentException("unknown option --" + key);
            }
        }
        ReplicatedBrokerConfig config = xml == null ? new ReplicatedBrokerConfig() : fromXml(xml);
        for (String[] f : flags) {
            config.applyFlag(f[0], f[1]);
        }
        return config;
    }

    /** A namespace-aware DOM parse that loads no external DTD or entity. */
    static Document parseXml(File file) throws IOException {
        try {
            DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
            f.setNamespaceAware(true);
            f.setFeature(XMLConstants.FEATURE_SECURE_PROCESSING, true);
            f.setFeature("http://apache.org/xml/features/nonvalidating/load-external-dtd", false);
            f.setFeature("http://xml.org/sax/features/external-general-entities", false);
            f.setFeature("http://xml.org/sax/features/external-parameter-entities", false);
            f.setExpandEntityReferences(false);
            DocumentBuilder b = f.newDocumentBuilder();
            b.setErrorHandler(null);
            return b.parse(file);
        } catch (ParserConfigurationException e) {
            throw new IOException("no XML parser: " + e.getMessage(), e);
        } catch (SAXException e) {
            throw new IOException(file + " is not well-formed XML: " + e.getMessage(), e);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Checks

    /**
     * Checks every attribute (not the broker config itself: see {@link ReplicatedBrokerRules}).
     *
     * @throws IllegalArgumentException naming the first bad attribute
     */
    public void validate() {
        if (brokerURI == null || brokerURI.isBlank()) {
            throw new IllegalArgumentException("brokerURI is required (xbean:ha-broker.xml or broker:(tcp://...))");
        }
        checkKdbrUri("uri", uri);
        if (directory == null || directory.getPath().isBlank()) {
            throw new IllegalArgumentException("directory is required (the node's journal, index and replication state)");
        }
        if (minimumReplicas < 0) {
            throw new IllegalArgumentException("minimumReplicas must be 0 or more, not " + minimumReplicas);
        }
        if (replicationTimeout < 0) {
            throw new IllegalArgumentException("replicationTimeout must be 0 or more milliseconds, not " + replicationTimeout);
        }
        if (transferSessions < 1 || transferSessions > 64) {
            throw new IllegalArgumentException("transferSessions must be 1 to 64, not " + transferSessions);
        }
        if (cluster == null || cluster.isBlank()) {
            throw new IllegalArgumentException("cluster must not be empty");
        }
        if (!isStatic()) {
            if (sessionTimeout <= 0) {
                throw new IllegalArgumentException("sessionTimeout must be a positive number of milliseconds, not "
                        + sessionTimeout);
            }
            for (String server : zookeeper.trim().split(",")) {
                if (!server.trim().matches("(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9._-]+)(:[0-9]{1,5})?(/.*)?")) {
                    throw new IllegalArgumentException("zookeeper must be host:port[,host:port...] (or '"
                            + NO_ZOOKEEPER + "' for a single node without ZooKeeper), not '" + zookeeper + "'");
                }
            }
            if (zookeeperPath != null && (!zookeeperPath.startsWith("/") || zookeeperPath.length() < 2
                    || zookeeperPath.endsWith("/"))) {
                throw new IllegalArgumentException("zookeeperPath must be an absolute znode path such as "
                        + "/kahadb-rs/prod, not '" + zookeeperPath + "'");
            }
        }
    }

    /** Checks a {@code kdbr://host:port} address. */
    static void checkKdbrUri(String what, String value) {
        if (value == null || value.isBlank()) {
            throw new IllegalArgumentException(what + " is required: this node's replication address, kdbr://host:port");
        }
        Matcher m = KDBR_URI.matcher(value.trim());
        if (!m.matches()) {
            throw new IllegalArgumentException(what + " must be kdbr://host:port (an IPv6 host in brackets), not '"
                    + value + "'");
        }
        int port = Integer.parseInt(m.group(2));
        if (port < 1 || port > 65535) {
            throw new IllegalArgumentException(what + ": port " + port + " is out of range in '" + value + "'");
        }
    }

    /** The node's options. */
    NodeOptions nodeOptions() {
        return new NodeOptions().directory(directory.toPath().toAbsolutePath()).uri(uri.trim()).cluster(cluster)
                .minimumReplicas(minimumReplicas).replicationTimeoutMillis(replicationTimeout)
                .transferSessions(transferSessions);
    }

    /** The attributes, for logs. */
    Map<String, String> describe() {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("brokerURI", brokerURI);
        m.put("uri", uri);
        m.put("directory", directory == null ? null : directory.getPath());
        m.put("minimumReplicas", Integer.toString(minimumReplicas));
        m.put("zookeeper", isStatic() ? NO_ZOOKEEPER : zookeeper);
        if (!isStatic()) {
            m.put("zookeeperPath", zookeeperPath == null ? "/kahadb-rs/" + cluster : zookeeperPath);
            m.put("sessionTimeout", Long.toString(sessionTimeout));
        }
        m.put("transferSessions", Integer.toString(transferSessions));
        m.put("cluster", cluster);
        return m;
    }

    @Override
    public String toString() {
        return "kahadbReplication" + describe();
    }
}
