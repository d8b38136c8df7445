package dev.kahadb.activemq;

import jakarta.jms.Connection;
import jakarta.jms.DeliveryMode;
import jakarta.jms.JMSException;
import jakarta.jms.MessageConsumer;
import jakarta.jms.MessageProducer;
import jakarta.jms.Queue;
import jakarta.jms.Session;
import jakarta.jms.TextMessage;

import org.apache.activemq.ActiveMQConnectionFactory;

/**
 * A small JMS client for a running broker ({@link Main}):
 *
 * <pre>
 * Demo [send N | receive | roundtrip N] [--uri tcp://127.0.0.1:61616] [--queue demo.queue]
 * </pre>
 *
 * {@code send} stores N persistent messages, {@code receive} drains the queue (waiting one
 * second for the next message), {@code roundtrip} (the default, N = 10) does both. Messages
 * sent and not received stay in the store across broker restarts.
 */
public final class Demo {
    private Demo() {
    }

    public static void main(String[] args) throws Exception {
        String mode = "roundtrip";
        int count = 10;
        String uri = Main.DEFAULT_URI;
        String queue = "demo.queue";
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--uri":
                    uri = args[++i];
                    break;
                case "--queue":
                    queue = args[++i];
                    break;
                case "send":
                case "roundtrip":
                    mode = args[i];
                    if (i + 1 < args.length && args[i + 1].matches("\\d+")) {
                        count = Integer.parseInt(args[++i]);
                    }
                    break;
                case "receive":
                    mode = args[i];
                    break;
                default:
                    System.err.println("usage: Demo [send N | receive | roundtrip N] [--uri URI] [--queue NAME]");
                    System.exit(2);
            }
        }
        ActiveMQConnectionFactory factory = new ActiveMQConnectionFactory(uri);
        Connection connection = factory.createConnection();
        try {
            connection.start();
            Session session = connection.createSession(false, Session.AUTO_ACKNOWLEDGE);
            Queue q = session.createQueue(queue);
            if (!mode.equals("receive")) {
                send(session, q, count);
            }
            if (!mode.equals("send")) {
                receive(session, q);
            }
        } finally {
            connection.close();
        }
    }

    private static void send(Session session, Queue queue, int count) throws JMSException {
        MessageProducer producer = session.createProducer(queue);
        producer.setDeliveryMode(DeliveryMode.PERSISTENT);
        long start = System.nanoTime();
        for (int i = 1; i <= count; i++) {
            producer.send(session.createTextMessage("hello from kahadb-rs #" + i));
        }
        long ms = (System.nanoTime() - start) / 1_000_000;
        System.out.println("sent " + count + " persistent message(s) to " + queue.getQueueName() + " in " + ms + " ms");
        producer.close();
    }

    private static void receive(Session session, Queue queue) throws JMSException {
        MessageConsumer consumer = session.createConsumer(queue);
        int received = 0;
        while (true) {
            jakarta.jms.Message m = consumer.receive(1000);
            if (m == null) {
                break;
            }
            received++;
            if (m instanceof TextMessage) {
                System.out.println("received: " + ((TextMessage) m).getText());
            }
        }
        System.out.println("received " + received + " message(s) from " + queue.getQueueName());
        consumer.close();
    }
}
