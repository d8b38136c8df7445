package dev.kahadb.activemq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;

import org.apache.activemq.broker.BrokerService;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The launcher's configuration rules, without ZooKeeper: the broker config must not start by
 * itself nor configure a persistence adapter; bad attributes and an unreachable ZooKeeper are
 * clear errors, with nothing started.
 */
class HaLauncherRulesTest {
    @TempDir
    Path dir;

    static String brokerXml(String brokerAttributes, String children) {
        return "<beans xmlns=\"http://www.springframework.org/schema/beans\"\n"
                + "       xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"\n"
                + "       xsi:schemaLocation=\"http://www.springframework.org/schema/beans "
                + "http://www.springframework.org/schema/beans/spring-beans.xsd "
                + "http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd\">\n"
                + "  <broker xmlns=\"http://activemq.apache.org/schema/core\" " + brokerAttributes + ">\n"
                + children + "\n  </broker>\n</beans>\n";
    }

    private String write(String name, String xml) throws IOException {
        Path f = dir.resolve(name);
        Files.writeString(f, xml);
        return "xbean:" + f;
    }

    private static String message(Class<? extends Throwable> type, Runnable r) {
        return assertThrows(type, r::run).getMessage();
    }

    @Test
    void xbeanMustSayStartFalse() throws IOException {
        String missing = write("a.xml", brokerXml("brokerName=\"a\" useJmx=\"false\"", ""));
        String m = message(IllegalArgumentException.class, () -> ReplicatedBrokerRules.check(missing, null));
        assertTrue(m.contains("start=\"false\""), m);
        String yes = write("b.xml", brokerXml("brokerName=\"b\" start=\"true\"", ""));
        m = message(IllegalArgumentException.class, () -> ReplicatedBrokerRules.check(yes, null));
        assertTrue(m.contains("it says start=\"true\""), m);
    }

    @Test
    void xbeanMustNotConfigureAPersistenceAdapter() throws IOException {
        String child = write("a.xml", brokerXml("start=\"false\"",
                "<persistenceAdapter><kahaDB directory=\"x\"/></persistenceAdapter>"));
        String m = message(IllegalArgumentException.class, () -> ReplicatedBrokerRules.check(child, null));
        assertTrue(m.contains("configures a persistence adapter (<persistenceAdapter>)"), m);
        String attr = write("b.xml", brokerXml("start=\"false\" persistenceAdapter=\"#store\"", ""));
        m = message(IllegalArgumentException.class, () -> ReplicatedBrokerRules.check(attr, null));
        assertTrue(m.contains("persistenceAdapter=\"#store\""), m);
        String notPersistent = write("c.xml", brokerXml("start=\"false\" persistent=\"false\"", ""));
        m = message(IllegalArgumentException.class, () -> ReplicatedBrokerRules.check(notPersistent, null));
        assertTrue(m.contains("persistent=\"false\""), m);
        String deleteAll = write("d.xml", brokerXml("start=\"false\" deleteAllMessagesOnStartup=\"true\"", ""));
        m = message(IllegalArgumentException.class, () -> ReplicatedBrokerRules.check(deleteAll, null));
        assertTrue(m.contains("deleteAllMessagesOnStartup"), m);
    }

    @Test
    void xbeanFileMustExistAndDeclareABroker() throws IOException {
        String m = message(IllegalArgumentException.class,
                () -> ReplicatedBrokerRules.check("xbean:" + dir.resolve("none.xml"), null));
        assertTrue(m.contains("no such file"), m);
        String noBroker = write("a.xml", "<beans xmlns=\"http://www.springframework.org/schema/beans\"/>");
        m = message(IllegalArgumentException.class, () -> ReplicatedBrokerRules.check(noBroker, null));
        assertTrue(m.contains("exactly one <broker> element"), m);
        String broken = write("b.xml", "<beans");
        m = message(IllegalArgumentException.class, () -> ReplicatedBrokerRules.check(broken, null));
        assertTrue(m.contains("not well-formed"), m);
        m = message(IllegalArgumentException.class, () -> ReplicatedBrokerRules.check("vm://localhost", null));
        assertTrue(m.contains("brokerURI must be xbean:"), m);
    }

    @Test
    void aGoodXbeanConfigIsCreatedNotStarted() throws Exception {
        write("ok.xml", brokerXml("brokerName=\"ok\" start=\"false\" useJmx=\"false\" dataDirectory=\""
                + dir.resolve("data") + "\"", "<transportConnectors><transportConnector uri=\"tcp://127.0.0.1:0\"/>"
                + "</transportConnectors>"));
        // Relative to the base directory (ha.xml's).
        URI uri = ReplicatedBrokerRules.check("xbean:ok.xml", dir.toFile());
        assertEquals(dir.resolve("ok.xml").toString(), uri.getSchemeSpecificPart());
        BrokerService b = ReplicatedBrokerRules.create("xbean:ok.xml", uri);
        try {
            assertFalse(b.isStarted());
            assertEquals("ok", b.getBrokerName());
        } finally {
            ReplicatedBrokerRules.discard(b);
        }
        assertFalse(Files.exists(dir.resolve("data")), "nothing was written");
    }

    @Test
    void brokerUriRules() {
        String m = message(IllegalArgumentException.class,
                () -> ReplicatedBrokerRules.check("broker:(tcp://127.0.0.1:0)?start=true", null));
        assertTrue(m.contains("must not start by itself"), m);
        m = message(IllegalArgumentException.class,
                () -> ReplicatedBrokerRules.check("broker:(tcp://127.0.0.1:0)?persistenceAdapter.directory=x", null));
        assertTrue(m.contains("configures a persistence adapter"), m);
        m = message(IllegalArgumentException.class,
                () -> ReplicatedBrokerRules.check("broker:(tcp://127.0.0.1:0)?persistent=false", null));
        assertTrue(m.contains("persistent=false"), m);

        URI ok = ReplicatedBrokerRules.check("broker:(tcp://127.0.0.1:0)?useJmx=false&start=false&brokerName=u", null);
        assertEquals("broker:(tcp://127.0.0.1:0)?useJmx=false&brokerName=u", ok.toString());
        BrokerService b = ReplicatedBrokerRules.create("broker:...", ok);
        try {
            assertFalse(b.isStarted());
            assertEquals("u", b.getBrokerName());
        } finally {
            ReplicatedBrokerRules.discard(b);
        }
        // An unknown broker property is ActiveMQ's own error, reported when the config is created.
        URI bad = ReplicatedBrokerRules.check("broker:(tcp://127.0.0.1:0)?noSuchThing=1", null);
        m = message(IllegalArgumentException.class, () -> ReplicatedBrokerRules.create("broker:(...)", bad));
        assertTrue(m.contains("cannot be created"), m);
        // The start-up check finds the same errors without binding the connectors' ports.
        m = message(IllegalArgumentException.class, () -> ReplicatedBrokerRules.validate("broker:(...)", bad));
        assertTrue(m.contains("cannot be created"), m);
        URI unknown = ReplicatedBrokerRules.check("broker:(nosuch://127.0.0.1:1)?useJmx=false", null);
        m = message(IllegalArgumentException.class, () -> ReplicatedBrokerRules.validate("broker:(nosuch...)", unknown));
        assertTrue(m.contains("nosuch"), m);
    }

    @Test
    void validatingABrokerUriLeavesItsPortFree() throws Exception {
        try (java.net.ServerSocket busy = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            URI u = ReplicatedBrokerRules.check("broker:(tcp://127.0.0.1:" + busy.getLocalPort()
                    + ")?useJmx=false&brokerName=v&dataDirectory=" + dir.resolve("v-data"), null);
            // Creating the broker would bind the busy port and fail; validating must not.
            ReplicatedBrokerRules.validate("broker:(...)", u);
        }
    }

    @Test
    void attributesAreChecked() {
        ReplicatedBrokerConfig c = new ReplicatedBrokerConfig().setBrokerURI("broker:(tcp://127.0.0.1:0)")
                .setDirectory(dir.toFile());
        String m = message(IllegalArgumentException.class, c::validate);
        assertTrue(m.contains("uri is required"), m);
        for (String bad : new String[] {"tcp://127.0.0.1:61617", "kdbr://127.0.0.1", "kdbr://host:99999",
            "kdbr://:1"}) {
            c.setUri(bad);
            m = message(IllegalArgumentException.class, c::validate);
            assertTrue(m.contains("kdbr://host:port") || m.contains("out of range"), m);
        }
        c.setUri("kdbr://[::1]:61617");
        c.validate();
        c.setTransferSessions(0);
        assertTrue(message(IllegalArgumentException.class, c::validate).contains("transferSessions"));
        c.setTransferSessions(4).setMinimumReplicas(-1);
        assertTrue(message(IllegalArgumentException.class, c::validate).contains("minimumReplicas"));
        c.setMinimumReplicas(1).setZookeeper("zk1:2181,zk2:2181").setZookeeperPath("relative");
        assertTrue(message(IllegalArgumentException.class, c::validate).contains("zookeeperPath"));
        c.setZookeeperPath("/kahadb-rs/prod").setSessionTimeout(0);
        assertTrue(message(IllegalArgumentException.class, c::validate).contains("sessionTimeout"));
        c.setSessionTimeout(4000);
        c.validate();
        assertFalse(c.isStatic());
        assertTrue(c.setZookeeper("none").isStatic());
    }

    @Test
    void haXmlAndFlags() throws IOException {
        Path xml = dir.resolve("ha.xml");
        Files.writeString(xml, "<kahadbReplication xmlns=\"http://kahadb.dev/schema/ha\"\n"
                + "    brokerURI=\"xbean:ha-broker.xml\" uri=\"kdbr://127.0.0.1:6001\" directory=\"data/node1\"\n"
                + "    minimumReplicas=\"1\" zookeeper=\"127.0.0.1:2181\" zookeeperPath=\"/kahadb-rs/demo\"\n"
                + "    sessionTimeout=\"4000\" transferSessions=\"2\"/>\n");
        ReplicatedBrokerConfig c = ReplicatedBrokerConfig.fromArgs(new String[] {"--config", xml.toString(), "--uri",
            "kdbr://127.0.0.1:6002", "--minimumReplicas=2"});
        assertEquals("xbean:ha-broker.xml", c.getBrokerURI());
        assertEquals("kdbr://127.0.0.1:6002", c.getUri());
        assertEquals(new File("data/node1"), c.getDirectory());
        assertEquals(2, c.getMinimumReplicas());
        assertEquals("/kahadb-rs/demo", c.getZookeeperPath());
        assertEquals(4000, c.getSessionTimeout());
        assertEquals(2, c.getTransferSessions());
        assertEquals(dir.toFile().getAbsoluteFile(), c.getBaseDirectory());
        c.validate();

        Files.writeString(xml, "<kahadbReplication brokerURI=\"x\" replicas=\"1\"/>");
        String m = message(IllegalArgumentException.class, () -> {
            try {
                ReplicatedBrokerConfig.fromXml(xml.toFile());
            } catch (IOException e) {
                throw new AssertionError(e);
            }
        });
        assertTrue(m.contains("unknown attribute 'replicas'"), m);
        m = message(IllegalArgumentException.class, () -> {
            try {
                ReplicatedBrokerConfig.fromArgs(new String[] {"--minimumReplicas", "one"});
            } catch (IOException e) {
                throw new AssertionError(e);
            }
        });
        assertTrue(m.contains("minimumReplicas must be a whole number"), m);
    }

    @Test
    void theSampleConfigsPass() throws Exception {
        File ha = new File("../conf/ha.xml");
        ReplicatedBrokerConfig c = ReplicatedBrokerConfig.fromXml(ha);
        c.validate();
        assertEquals("xbean:ha-broker.xml", c.getBrokerURI());
        URI uri = ReplicatedBrokerRules.check(c.getBrokerURI(), c.getBaseDirectory());
        assertEquals(new File("../conf/ha-broker.xml").getCanonicalFile(), new File(uri.getSchemeSpecificPart())
                .getCanonicalFile());
        BrokerService b = ReplicatedBrokerRules.create(c.getBrokerURI(), uri);
        try {
            assertFalse(b.isStarted());
            assertEquals("kahadb-ha", b.getBrokerName());
        } finally {
            ReplicatedBrokerRules.discard(b);
        }
    }
}
