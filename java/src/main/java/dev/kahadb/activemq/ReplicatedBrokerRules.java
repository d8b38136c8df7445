package dev.kahadb.activemq;

import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.net.URISyntaxException;
import java.net.URL;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

import org.apache.activemq.broker.BrokerContext;
import org.apache.activemq.broker.BrokerFactory;
import org.apache.activemq.broker.BrokerService;
import org.apache.activemq.broker.TransportConnector;
import org.apache.activemq.transport.TransportFactory;
import org.apache.activemq.util.URISupport;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.NodeList;

/**
 * The seed's two rules for a replicated broker's {@code brokerURI}, checked before anything
 * starts: the broker must not start by itself, and must not configure a persistence adapter
 * (the launcher injects the replicated kahadb-rs store).
 *
 * <ul>
 *   <li>{@code xbean:FILE.xml}, {@code xbean:file:FILE.xml}, {@code xbean:classpath:NAME.xml}
 *       (Spring XML, loaded by ActiveMQ's {@code activemq-spring}): the file must declare one
 *       {@code <broker>} element of ActiveMQ's namespace with {@code start="false"} written
 *       out, and without a {@code <persistenceAdapter>} / {@code <persistenceFactory>} child or
 *       {@code persistenceAdapter} / {@code persistenceFactory} attribute; {@code
 *       persistent="false"} and {@code deleteAllMessagesOnStartup="true"} are refused too.
 *   <li>{@code broker:(tcp://...)?...}: a broker made from such a URI never starts by itself;
 *       {@code start=false} may be given (and is removed before ActiveMQ reads the URI), {@code
 *       start=true} is refused, as are {@code persistent=false}, {@code
 *       deleteAllMessagesOnStartup=true} and any {@code persistenceAdapter...} or {@code
 *       persistenceFactory...} parameter.
 * </ul>
 *
 * A created broker is checked again (not started, persistent, no persistence factory) as a
 * backstop.
 */
final class ReplicatedBrokerRules {
    private static final Logger LOG = LoggerFactory.getLogger(ReplicatedBrokerRules.class);
    static final String AMQ_NS = "http://activemq.apache.org/schema/core";

    private ReplicatedBrokerRules() {
    }

    /** A misconfigured broker config. */
    static final class BrokerConfigException extends IllegalArgumentException {
        private static final long serialVersionUID = 1L;

        BrokerConfigException(String message) {
            super(message);
        }

        BrokerConfigException(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /**
     * Checks {@code brokerURI} statically and returns the URI to create the broker from (an
     * {@code xbean:} file made absolute, a {@code broker:} URI without {@code start=false}).
     *
     * @param base where a relative {@code xbean:} file is looked up first (ha.xml's directory), or null
     * @throws BrokerConfigException when a rule is broken or the config cannot be read
     */
    static URI check(String brokerURI, File base) {
        String u = brokerURI.trim();
        if (u.startsWith("xbean:")) {
            return checkXbean(brokerURI, u.substring("xbean:".length()), base);
        }
        if (u.startsWith("broker:")) {
            return checkBrokerUri(brokerURI, u);
        }
        throw new BrokerConfigException("brokerURI must be xbean:FILE.xml, xbean:classpath:NAME.xml or "
                + "broker:(tcp://host:port)?..., not '" + brokerURI + "'");
    }

    private static URI checkXbean(String brokerURI, String rest, File base) {
        String query = "";
        int q = rest.indexOf('?');
        if (q >= 0) {
            query = rest.substring(q);
            rest = rest.substring(0, q);
        }
        if (rest.isEmpty()) {
            throw new BrokerConfigException("brokerURI '" + brokerURI + "' names no file");
        }
        URI result;
        Document doc;
        try {
            if (rest.startsWith("classpath:")) {
                String name = rest.substring("classpath:".length());
                while (name.startsWith("/")) {
                    name = name.substring(1);
                }
                URL url = Thread.currentThread().getContextClassLoader().getResource(name);
                if (url == null) {
                    throw new BrokerConfigException("brokerURI '" + brokerURI + "': no " + name + " on the class path");
                }
                doc = parse(url);
                result = new URI("xbean:classpath:" + name + query);
            } else {
                String path = rest.startsWith("file:") ? rest.substring("file:".length()) : rest;
                if (path.startsWith("//")) {
                    path = new URI("file:" + path).getPath();
                }
                File f = new File(path);
                if (!f.isAbsolute() && base != null && new File(base, path).isFile()) {
                    f = new File(base, path);
                }
                f = f.getAbsoluteFile();
                if (!f.isFile()) {
                    throw new BrokerConfigException("brokerURI '" + brokerURI + "': no such file " + f);
                }
                doc = ReplicatedBrokerConfig.parseXml(f);
                // XBeanBrokerFactory reads the scheme-specific part as a file name when it exists.
                result = new URI("xbean", f.getPath() + query, null);
            }
        } catch (IOException e) {
            throw new BrokerConfigException("brokerURI '" + brokerURI + "': " + e.getMessage(), e);
        } catch (URISyntaxException e) {
            throw new BrokerConfigException("brokerURI '" + brokerURI + "' is not a URI: " + e.getMessage(), e);
        }
        checkBrokerElement(brokerURI, doc);
        return result;
    }

    private static Document parse(URL url) throws IOException {
        if ("file".equals(url.getProtocol())) {
            try {
                return ReplicatedBrokerConfig.parseXml(new File(url.toURI()));
            } catch (URISyntaxException e) {
                throw new IOException(e.getMessage(), e);
            }
        }
        File tmp = File.createTempFile("broker", ".xml");
        try {
            try (var in = url.openStream()) {
                java.nio.file.Files.copy(in, tmp.toPath(), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            }
            return ReplicatedBrokerConfig.parseXml(tmp);
        } finally {
            if (!tmp.delete()) {
                tmp.deleteOnExit();
            }
        }
    }

    /** The rules on the {@code <broker>} element of a Spring XML config. */
    static void checkBrokerElement(String brokerURI, Document doc) {
        NodeList brokers = doc.getElementsByTagNameNS(AMQ_NS, "broker");
        if (brokers.getLength() != 1) {
            throw new BrokerConfigException("brokerURI '" + brokerURI + "' must declare exactly one <broker> element "
                    + "of " + AMQ_NS + ", found " + brokers.getLength());
        }
        Element broker = (Element) brokers.item(0);
        String start = broker.hasAttribute("start") ? broker.getAttribute("start").trim() : null;
        if (!"false".equals(start)) {
            throw new BrokerConfigException("brokerURI '" + brokerURI + "': the <broker> element must say start=\"false\""
                    + (start == null ? "" : " (it says start=\"" + start + "\")")
                    + ": the broker must not start by itself; the launcher starts it when this node becomes master");
        }
        List<String> adapters = new ArrayList<>();
        for (org.w3c.dom.Node c = broker.getFirstChild(); c != null; c = c.getNextSibling()) {
            if (c instanceof Element) {
                String name = c.getLocalName() != null ? c.getLocalName() : c.getNodeName();
                if (name.equals("persistenceAdapter") || name.equals("persistenceFactory")) {
                    adapters.add("<" + name + ">");
                }
            }
        }
        for (String attr : new String[] {"persistenceAdapter", "persistenceFactory"}) {
            if (broker.hasAttribute(attr)) {
                adapters.add(attr + "=\"" + broker.getAttribute(attr) + "\"");
            }
        }
        if (!adapters.isEmpty()) {
            throw noAdapter(brokerURI, String.join(", ", adapters));
        }
        if ("false".equals(broker.getAttribute("persistent").trim())) {
            throw new BrokerConfigException("brokerURI '" + brokerURI + "' says persistent=\"false\": a replicated "
                    + "broker is persistent (remove the attribute)");
        }
        if ("true".equals(broker.getAttribute("deleteAllMessagesOnStartup").trim())) {
            throw new BrokerConfigException("brokerURI '" + brokerURI + "' says deleteAllMessagesOnStartup=\"true\": "
                    + "a node's data is the cluster's");
        }
    }

    private static BrokerConfigException noAdapter(String brokerURI, String what) {
        return new BrokerConfigException("brokerURI '" + brokerURI + "' configures a persistence adapter (" + what
                + "): remove it; the launcher injects the replicated kahadb-rs store (directory, journal options "
                + "and minimumReplicas come from the kahadbReplication attributes)");
    }

    private static URI checkBrokerUri(String brokerURI, String u) {
        // broker:(components)?params or broker:name?params: the broker's own parameters are the
        // query after the composite part.
        int close = u.lastIndexOf(')');
        int q = u.indexOf('?', Math.max(close, 0));
        String head = q < 0 ? u : u.substring(0, q);
        String query = q < 0 ? "" : u.substring(q + 1);
        List<String> kept = new ArrayList<>();
        for (String p : query.split("&")) {
            if (p.isEmpty()) {
                continue;
            }
            int eq = p.indexOf('=');
            String key = eq < 0 ? p : p.substring(0, eq);
            String value = eq < 0 ? "" : p.substring(eq + 1).trim().toLowerCase(Locale.ROOT);
            if (key.equals("start")) {
                if (!value.equals("false")) {
                    throw new BrokerConfigException("brokerURI '" + brokerURI + "' says start=" + value
                            + ": the broker must not start by itself (leave start out, or say start=false)");
                }
                continue;
            }
            if (key.startsWith("persistenceAdapter") || key.startsWith("persistenceFactory")) {
                throw noAdapter(brokerURI, key);
            }
            if (key.equals("persistent") && value.equals("false")) {
                throw new BrokerConfigException("brokerURI '" + brokerURI + "' says persistent=false: a replicated "
                        + "broker is persistent");
            }
            if (key.equals("deleteAllMessagesOnStartup") && value.equals("true")) {
                throw new BrokerConfigException("brokerURI '" + brokerURI + "' says deleteAllMessagesOnStartup=true: "
                        + "a node's data is the cluster's");
            }
            kept.add(p);
        }
        String cleaned = kept.isEmpty() ? head : head + "?" + String.join("&", kept);
        try {
            return new URI(cleaned);
        } catch (URISyntaxException e) {
            throw new BrokerConfigException("brokerURI '" + brokerURI + "' is not a URI: " + e.getMessage(), e);
        }
    }

    /**
     * Loads the broker config once, the way {@link #create} will on promotion, so that a config
     * that cannot be created fails at start-up; without holding anything the running broker
     * would hold. An {@code xbean:} broker is created and discarded (its connectors bind only
     * when it starts). A {@code broker:} URI's connectors bind their ports as soon as ActiveMQ
     * creates the broker, and a slave must not take the port its master's clients use, so the
     * broker is created without them and each connector's transport is only looked up.
     *
     * @throws BrokerConfigException when the config cannot be loaded or breaks a rule
     */
    static void validate(String brokerURI, URI checked) {
        if (!"broker".equals(checked.getScheme())) {
            discard(create(brokerURI, checked));
            return;
        }
        URI bare;
        try {
            URISupport.CompositeData data = URISupport.parseComposite(checked);
            for (URI connector : data.getComponents()) {
                try {
                    TransportFactory.findTransportFactory(connector);
                } catch (IOException e) {
                    throw new BrokerConfigException("brokerURI '" + brokerURI + "': connector " + connector + ": "
                            + e.getMessage(), e);
                }
            }
            String query = URISupport.createQueryString(data.getParameters());
            bare = new URI("broker:()" + (query.isEmpty() ? "" : "?" + query));
        } catch (URISyntaxException e) {
            throw new BrokerConfigException("brokerURI '" + brokerURI + "' is not a broker URI: " + e.getMessage(), e);
        }
        discard(create(brokerURI, bare));
    }

    /**
     * Creates (does not start) the broker from a URI returned by {@link #check}, and checks it
     * again: not started, persistent, no persistence factory.
     *
     * @throws BrokerConfigException when the config cannot be loaded or breaks a rule
     */
    static BrokerService create(String brokerURI, URI checked) {
        BrokerService broker;
        BrokerFactory.setStartDefault(false);
        try {
            broker = BrokerFactory.createBroker(checked, false);
        } catch (Exception e) {
            throw new BrokerConfigException("brokerURI '" + brokerURI + "': the broker cannot be created: " + e, e);
        } finally {
            BrokerFactory.resetStartDefault();
        }
        String problem = null;
        if (broker.isStarted()) {
            problem = "the broker started by itself (it must not: say start=\"false\")";
        } else if (broker.getPersistenceFactory() != null) {
            problem = "it configures a persistence factory (remove it; the launcher injects the replicated store)";
        } else if (!broker.isPersistent()) {
            problem = "the broker is not persistent";
        } else if (broker.isDeleteAllMessagesOnStartup()) {
            problem = "deleteAllMessagesOnStartup is set (a node's data is the cluster's)";
        }
        if (problem != null) {
            if (broker.isStarted()) {
                dispose(broker);
            } else {
                discard(broker);
            }
            throw new BrokerConfigException("brokerURI '" + brokerURI + "': " + problem);
        }
        return broker;
    }

    /**
     * Releases a broker that was created and never started: a {@code broker:} URI's connectors
     * bind their ports when the broker is created, so they are stopped. Its {@code stop()} is
     * not called (on a broker that never started it stops the default store it made up, noisily)
     * and an {@code xbean:} config's Spring context is left to the garbage collector (closing it
     * would call that {@code stop()}).
     */
    static void discard(BrokerService broker) {
        for (TransportConnector c : broker.getTransportConnectors()) {
            try {
                c.stop();
            } catch (Exception e) {
                LOG.debug("releasing connector {}: {}", c.getName(), e.toString());
            }
        }
    }

    /**
     * Stops a broker that was started (or whose start was attempted), and closes the Spring
     * application context of an {@code xbean:} config (ActiveMQ's factory leaves it open).
     */
    static void dispose(BrokerService broker) {
        try {
            broker.stop();
            broker.waitUntilStopped();
        } catch (Exception e) {
            LOG.warn("stopping broker {}: {}", broker.getBrokerName(), e.toString());
        }
        BrokerContext context = broker.getBrokerContext();
        if (context != null) {
            try {
                Object app = context.getClass().getMethod("getApplicationContext").invoke(context);
                if (app instanceof AutoCloseable) {
                    ((AutoCloseable) app).close();
                }
            } catch (ReflectiveOperationException e) {
                // Not a Spring context: nothing to close.
            } catch (Exception e) {
                LOG.warn("closing the Spring context of broker {}: {}", broker.getBrokerName(), e.toString());
            }
        }
    }
}
