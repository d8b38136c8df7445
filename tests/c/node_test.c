/*
 * The replication node's C ABI from a C program: two nodes in one process on loopback, a
 * master with minimum_replicas 1 and a slave, synchronous writes through the master's store
 * handle, the status JSON, REPLICATION_TIMEOUT, failover (the slave promoted at epoch 2 reads
 * every message back), the old master rejoining as a slave, a demotion and a second failover,
 * and every documented misuse.
 * Built by `make test` with gcc -Wall -Wextra -Werror against include/kahadb.h.
 * Usage: node_test <scratch directory> (fresh: node directories keep their epoch across runs)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "test_support.h"
#include "kahadb.h"

#define Q KAHADB_DEST_QUEUE
#define WAIT_MS 30000

/* ---- Helpers ---- */

/* Ports free on 127.0.0.1 right now: each found by binding port 0, all sockets held open
 * until every port is known so that no two are the same. Returns -1 entries on failure. */
static void free_ports(int *ports, int n) {
    int fds[8];
    for (int i = 0; i < n && i < 8; i++) {
        ports[i] = -1;
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = 0;
        socklen_t len = sizeof a;
        if (fds[i] >= 0 && bind(fds[i], (struct sockaddr *)&a, sizeof a) == 0 &&
            getsockname(fds[i], (struct sockaddr *)&a, &len) == 0) {
            ports[i] = ntohs(a.sin_port);
        }
    }
    for (int i = 0; i < n && i < 8; i++) {
        if (fds[i] >= 0) close(fds[i]);
    }
}

/* A socket listening on 127.0.0.1:port (to make that address busy), or -1. */
static int listen_on(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 1) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static void node_options(kahadb_node_options *o, const char *dir, const char *uri,
                         uint32_t minimum_replicas) {
    kahadb_node_options_init(o);
    o->directory = dir;
    o->uri = uri;
    o->minimum_replicas = minimum_replicas;
    o->transfer_sessions = 2;
    o->store.journal.max_file_length = 1024 * 1024;
    o->store.journal.max_batch_size = 256 * 1024;
    o->store.journal.preallocation = KAHADB_PREALLOC_SPARSE;
}

static int role_of(kahadb_node *n) {
    int32_t role = -1;
    EXPECT_RC(kahadb_node_role(n, &role), KAHADB_OK);
    return role;
}

static uint64_t epoch_of(kahadb_node *n) {
    uint64_t epoch = 0;
    EXPECT_RC(kahadb_node_epoch(n, &epoch), KAHADB_OK);
    return epoch;
}

/* The node's status JSON, copied into buf (empty on failure). */
static void status_of(kahadb_node *n, char *buf, size_t cap) {
    uint8_t *data = NULL;
    size_t len = 0;
    buf[0] = 0;
    int32_t rc = kahadb_node_status_json(n, &data, &len);
    CHECK(rc == KAHADB_OK, "status_json returned %s", kahadb_result_name(rc));
    if (rc != KAHADB_OK) return;
    CHECK(len > 0 && data[len - 1] == 0 && strlen((const char *)data) == len - 1,
          "the status JSON is one NUL-terminated string counted with its NUL (len %zu)", len);
    snprintf(buf, cap, "%s", (const char *)data);
    kahadb_buffer_free(data, len);
}

/* Polls the node's status until it contains every one of the NULL-terminated needles. */
static int status_shows(kahadb_node *n, const char *const *needles, long timeout_ms) {
    char buf[8192];
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        uint8_t *data = NULL;
        size_t len = 0;
        int all = 0;
        if (kahadb_node_status_json(n, &data, &len) == KAHADB_OK) {
            snprintf(buf, sizeof buf, "%s", (const char *)data);
            kahadb_buffer_free(data, len);
            all = 1;
            for (const char *const *s = needles; *s; s++) {
                if (!strstr(buf, *s)) all = 0;
            }
        }
        if (all) return 1;
        if (now_ms() >= deadline) {
            fprintf(stderr, "status never showed what was expected; last: %s\n", buf);
            return 0;
        }
        sleep_ms(20);
    }
}

static int wait_epoch(kahadb_node *n, uint64_t want, long timeout_ms) {
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        uint64_t e = 0;
        if (kahadb_node_epoch(n, &e) == KAHADB_OK && e == want) return 1;
        if (now_ms() >= deadline) return 0;
        sleep_ms(20);
    }
}

static int live_slaves(kahadb_node *n, uint32_t count) {
    bool ok = false;
    EXPECT_RC(kahadb_node_wait_live_slaves(n, count, WAIT_MS, &ok), KAHADB_OK);
    return ok;
}

static void message_id(char *buf, size_t cap, int i) {
    snprintf(buf, cap, "ID:node-test:1:1:%d", i);
}

static void message_body(char *buf, size_t cap, int i) {
    snprintf(buf, cap, "message %d from the C node test", i);
}

static int32_t add(kahadb_store *s, int i, bool sync) {
    char id[64], body[64];
    message_id(id, sizeof id, i);
    message_body(body, sizeof body, i);
    return kahadb_store_add(s, Q, "orders", id, 4, false, (const uint8_t *)body, strlen(body),
                            sync, NULL);
}

static uint64_t count_of(kahadb_store *s) {
    uint64_t count = 0, bytes = 0;
    EXPECT_RC(kahadb_store_counts(s, Q, "orders", NULL, &count, &bytes), KAHADB_OK);
    return count;
}

/* ---- Reading the packed `messages` buffer (big-endian). ---- */

typedef struct {
    const uint8_t *p;
    size_t len, pos;
    int ok;
} reader;

static const uint8_t *take(reader *r, size_t n) {
    if (!r->ok || r->len - r->pos < n) {
        r->ok = 0;
        return NULL;
    }
    const uint8_t *s = r->p + r->pos;
    r->pos += n;
    return s;
}

static int32_t get_i32(reader *r) {
    const uint8_t *b = take(r, 4);
    if (!b) return 0;
    return (int32_t)(((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3]);
}

static int64_t get_i64(reader *r) {
    uint64_t hi = (uint32_t)get_i32(r);
    uint64_t lo = (uint32_t)get_i32(r);
    return (int64_t)((hi << 32) | lo);
}

static void get_str(reader *r, char *buf, size_t cap) {
    int32_t n = get_i32(r);
    const uint8_t *b = n >= 0 ? take(r, (size_t)n) : NULL;
    if (!b) {
        r->ok = 0;
        buf[0] = 0;
        return;
    }
    size_t m = (size_t)n < cap - 1 ? (size_t)n : cap - 1;
    memcpy(buf, b, m);
    buf[m] = 0;
}

/* Reads the queue back and checks it holds messages 0..n-1 in order, with their bodies. */
static void check_messages(kahadb_store *s, int n, const char *who) {
    uint8_t *data = NULL;
    size_t len = 0;
    int32_t rc = kahadb_store_read(s, Q, "orders", NULL, NULL, &data, &len);
    CHECK(rc == KAHADB_OK, "%s: read returned %s", who, kahadb_result_name(rc));
    if (rc != KAHADB_OK) return;
    reader r = {data, len, 0, 1};
    int32_t count = get_i32(&r);
    CHECK(count == n, "%s: read returned %d messages, want %d", who, count, n);
    int in_order = 1;
    for (int32_t i = 0; i < count && r.ok; i++) {
        char id[64], body[64], want_id[64], want_body[64];
        int64_t seq = get_i64(&r);
        (void)take(&r, 1); /* lane */
        get_str(&r, id, sizeof id);
        get_str(&r, body, sizeof body);
        message_id(want_id, sizeof want_id, i);
        message_body(want_body, sizeof want_body, i);
        if (seq != i || strcmp(id, want_id) != 0 || strcmp(body, want_body) != 0) {
            fprintf(stderr, "%s: message %d is %lld %s \"%s\"\n", who, i, (long long)seq, id, body);
            in_order = 0;
        }
    }
    CHECK(r.ok && r.pos == len, "%s: the messages buffer parses", who);
    CHECK(in_order, "%s: every message comes back in order with its body", who);
    kahadb_buffer_free(data, len);
}

/* ---- The defaults ---- */

static void test_defaults(void) {
    kahadb_node_options o;
    memset(&o, 0xab, sizeof o);
    kahadb_node_options_init(&o);
    kahadb_node_options_init(NULL);
    CHECK(o.directory == NULL && o.uri == NULL && o.cluster == NULL, "strings default to NULL");
    CHECK(o.minimum_replicas == 0, "minimum_replicas defaults to %u", o.minimum_replicas);
    CHECK(o.replication_timeout_ms == 10000, "replication_timeout_ms defaults to %llu",
          (unsigned long long)o.replication_timeout_ms);
    CHECK(o.transfer_sessions == 4, "transfer_sessions defaults to %u", o.transfer_sessions);
    kahadb_store_options so;
    kahadb_store_options_init(&so);
    CHECK(memcmp(&o.store.journal, &so.journal, sizeof so.journal) == 0 &&
              o.store.checkpoint_every == so.checkpoint_every && !o.store.delete_all,
          "the store options default as kahadb_store_options_init sets them");
}

/* ---- Two nodes: replication, failover, demotion ---- */

static void test_replication(const char *scratch) {
    int ports[2];
    free_ports(ports, 2);
    CHECK(ports[0] > 0 && ports[1] > 0, "two free ports (%d, %d)", ports[0], ports[1]);
    char uri_a[64], uri_b[64], dir_a[4096], dir_b[4096];
    snprintf(uri_a, sizeof uri_a, "kdbr://127.0.0.1:%d", ports[0]);
    snprintf(uri_b, sizeof uri_b, "kdbr://127.0.0.1:%d", ports[1]);
    snprintf(dir_a, sizeof dir_a, "%s/node-a", scratch);
    snprintf(dir_b, sizeof dir_b, "%s/node-b", scratch);

    kahadb_node_options o;
    kahadb_node *a = NULL, *b = NULL;
    node_options(&o, dir_a, uri_a, 1);
    EXPECT_RC(kahadb_node_open(&o, &a), KAHADB_OK);
    node_options(&o, dir_b, uri_b, 1);
    EXPECT_RC(kahadb_node_open(&o, &b), KAHADB_OK);
    CHECK(a != NULL && b != NULL && a != b, "two node handles");

    /* A new node is stopped, at epoch 0, without a store. */
    char st[8192];
    CHECK(role_of(a) == KAHADB_ROLE_STOPPED, "a new node is stopped");
    CHECK(epoch_of(a) == 0, "a new node knows epoch 0");
    kahadb_store *sa = NULL;
    EXPECT_RC(kahadb_node_store(a, &sa), KAHADB_ERR_ILLEGAL_STATE);
    status_of(a, st, sizeof st);
    CHECK(strstr(st, "\"role\":\"stopped\"") && strstr(st, "\"epoch\":0"), "stopped status: %s", st);

    /* A: master at epoch 1; B: its slave. */
    EXPECT_RC(kahadb_node_start_master(a, 1), KAHADB_OK);
    CHECK(role_of(a) == KAHADB_ROLE_MASTER, "a is master");
    CHECK(epoch_of(a) == 1, "a is at epoch 1");
    EXPECT_RC(kahadb_node_start_master(a, 1), KAHADB_ERR_ILLEGAL_STATE);
    EXPECT_RC(kahadb_node_store(a, &sa), KAHADB_OK);
    EXPECT_RC(kahadb_node_start_slave(b, uri_a), KAHADB_OK);
    CHECK(role_of(b) == KAHADB_ROLE_SLAVE, "b is a slave");
    kahadb_store *sb = NULL;
    EXPECT_RC(kahadb_node_store(b, &sb), KAHADB_ERR_ILLEGAL_STATE);
    CHECK(live_slaves(a, 1), "b becomes a live slave of a");

    /* Synchronous writes through the master's store handle, acknowledged by b. */
    int n = 0;
    for (; n < 20; n++) EXPECT_RC(add(sa, n, true), KAHADB_OK);
    CHECK(count_of(sa) == 20, "the master stores 20 messages");
    status_of(a, st, sizeof st);
    CHECK(strstr(st, "\"role\":\"master\"") && strstr(st, "\"live_slaves\":1") &&
              strstr(st, "\"state\":\"live\"") && strstr(st, "\"minimum_replicas\":1") &&
              strstr(st, "\"epoch\":1") && strstr(st, uri_a),
          "master status shows its live slave: %s", st);
    char node_b[64];
    snprintf(node_b, sizeof node_b, "\"node\":\"127.0.0.1:%d\"", ports[1]);
    CHECK(strstr(st, node_b) != NULL, "the master's status names its slave %s: %s", node_b, st);
    const char *slave_live[] = {"\"role\":\"slave\"", "\"link\":\"live\"", uri_a, NULL};
    CHECK(status_shows(b, slave_live, WAIT_MS), "the slave's status shows its live link");

    /* More live slaves than there are: a synchronous write times out (it is on a's disk all
     * the same); an asynchronous one never waits. Then back to 1. */
    EXPECT_RC(kahadb_node_set_minimum_replicas(a, 2), KAHADB_OK);
    EXPECT_RC(kahadb_node_set_replication_timeout(a, 300), KAHADB_OK);
    status_of(a, st, sizeof st);
    CHECK(strstr(st, "\"minimum_replicas\":2") && strstr(st, "\"replication_timeout_ms\":300"),
          "status shows the new settings: %s", st);
    long long t0 = now_ms();
    EXPECT_RC(add(sa, n++, true), KAHADB_ERR_REPLICATION_TIMEOUT);
    CHECK(now_ms() - t0 >= 250, "the write waited for the timeout (%lld ms)", now_ms() - t0);
    EXPECT_RC(add(sa, n++, false), KAHADB_OK);
    EXPECT_RC(kahadb_node_set_minimum_replicas(a, 1), KAHADB_OK);
    EXPECT_RC(kahadb_node_set_replication_timeout(a, 10000), KAHADB_OK);
    EXPECT_RC(add(sa, n++, true), KAHADB_OK);
    CHECK(count_of(sa) == (uint64_t)n, "the master stores %d messages", n);

    /* A second handle on the same store: closing it only releases it. */
    kahadb_store *sa2 = NULL;
    EXPECT_RC(kahadb_node_store(a, &sa2), KAHADB_OK);
    CHECK(sa2 != NULL && sa2 != sa, "a second store handle");
    CHECK(count_of(sa2) == (uint64_t)n, "both handles see the same store");
    EXPECT_RC(kahadb_store_close(sa2), KAHADB_OK);
    EXPECT_RC(kahadb_store_close(sa2), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_store_counts(sa2, Q, "orders", NULL, &(uint64_t){0}, &(uint64_t){0}),
              KAHADB_ERR_CLOSED);
    EXPECT_RC(add(sa, n++, true), KAHADB_OK);
    CHECK(count_of(sa) == (uint64_t)n, "the node's store is still open after the release");

    /* Failover: a stops (its store closes under the handle), b is promoted at epoch 2. */
    EXPECT_RC(kahadb_node_stop(a), KAHADB_OK);
    EXPECT_RC(kahadb_node_stop(a), KAHADB_OK);
    CHECK(role_of(a) == KAHADB_ROLE_STOPPED, "a is stopped");
    EXPECT_RC(add(sa, 999, true), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_store_counts(sa, Q, "orders", NULL, &(uint64_t){0}, &(uint64_t){0}),
              KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_store_checkpoint(sa), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_store_close(sa), KAHADB_OK);
    EXPECT_RC(kahadb_node_promote(a, 2), KAHADB_ERR_ILLEGAL_STATE);
    EXPECT_RC(kahadb_node_demote(a, uri_b), KAHADB_ERR_ILLEGAL_STATE);
    EXPECT_RC(kahadb_node_start_master(a, 0), KAHADB_ERR_ILLEGAL_STATE);
    CHECK(role_of(a) == KAHADB_ROLE_STOPPED, "a refused request changes nothing");

    EXPECT_RC(kahadb_node_promote(b, 2), KAHADB_OK);
    CHECK(role_of(b) == KAHADB_ROLE_MASTER, "b is master");
    CHECK(epoch_of(b) == 2, "b is at epoch 2");
    EXPECT_RC(kahadb_node_promote(b, 3), KAHADB_ERR_ILLEGAL_STATE);
    EXPECT_RC(kahadb_node_store(b, &sb), KAHADB_OK);
    CHECK(count_of(sb) == (uint64_t)n, "the promoted node has all %d messages", n);
    check_messages(sb, n, "promoted b");

    /* The old master rejoins as b's slave and learns epoch 2. */
    EXPECT_RC(kahadb_node_start_slave(a, uri_b), KAHADB_OK);
    CHECK(live_slaves(b, 1), "a becomes a live slave of b");
    CHECK(wait_epoch(a, 2, WAIT_MS), "a learns epoch 2 from its master");
    EXPECT_RC(kahadb_node_start_master(a, 1), KAHADB_ERR_ILLEGAL_STATE);
    CHECK(role_of(a) == KAHADB_ROLE_SLAVE, "a is still b's slave");
    for (int i = 0; i < 5; i++) EXPECT_RC(add(sb, n++, true), KAHADB_OK);

    /* Demotion: b becomes a's slave (its store closes), a is promoted at epoch 3. */
    EXPECT_RC(kahadb_node_demote(b, uri_b), KAHADB_ERR_CONFIG);
    CHECK(role_of(b) == KAHADB_ROLE_MASTER, "a refused demotion changes nothing");
    EXPECT_RC(kahadb_node_demote(b, uri_a), KAHADB_OK);
    CHECK(role_of(b) == KAHADB_ROLE_SLAVE, "b is a slave after the demotion");
    EXPECT_RC(add(sb, 999, true), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_node_promote(a, 3), KAHADB_OK);
    CHECK(role_of(a) == KAHADB_ROLE_MASTER && epoch_of(a) == 3, "a is master at epoch 3");
    EXPECT_RC(kahadb_store_counts(sb, Q, "orders", NULL, &(uint64_t){0}, &(uint64_t){0}),
              KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_store_close(sb), KAHADB_OK);
    EXPECT_RC(kahadb_node_store(a, &sa), KAHADB_OK);
    check_messages(sa, n, "a promoted again");
    CHECK(live_slaves(a, 1), "b becomes a live slave of a");
    EXPECT_RC(add(sa, n++, true), KAHADB_OK);
    const char *caught_up[] = {"\"lag_bytes\":0", "\"live_slaves\":1", NULL};
    CHECK(status_shows(a, caught_up, WAIT_MS), "b acknowledges everything");

    /* Closing the node: its handle and its store handles are closed. */
    EXPECT_RC(kahadb_node_close(a), KAHADB_OK);
    EXPECT_RC(kahadb_node_close(a), KAHADB_ERR_CLOSED);
    int32_t role = -1;
    EXPECT_RC(kahadb_node_role(a, &role), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_node_start_master(a, 9), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_node_store(a, &sb), KAHADB_ERR_CLOSED);
    EXPECT_RC(add(sa, 999, true), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_store_close(sa), KAHADB_OK);
    EXPECT_RC(kahadb_node_close(b), KAHADB_OK);

    /* Reopened, a remembers epoch 3 and its messages. */
    node_options(&o, dir_a, uri_a, 0);
    EXPECT_RC(kahadb_node_open(&o, &a), KAHADB_OK);
    CHECK(epoch_of(a) == 3, "the epoch survives a restart");
    EXPECT_RC(kahadb_node_start_master(a, 2), KAHADB_ERR_ILLEGAL_STATE);
    EXPECT_RC(kahadb_node_start_master(a, 4), KAHADB_OK);
    EXPECT_RC(kahadb_node_store(a, &sa), KAHADB_OK);
    check_messages(sa, n, "a reopened");
    EXPECT_RC(kahadb_store_close(sa), KAHADB_OK);
    EXPECT_RC(kahadb_node_close(a), KAHADB_OK);
}

/* ---- Misuse ---- */

static void test_misuse(const char *scratch) {
    char dir[4096], uri[64];
    int ports[1];
    free_ports(ports, 1);
    snprintf(dir, sizeof dir, "%s/node-misuse", scratch);
    snprintf(uri, sizeof uri, "kdbr://127.0.0.1:%d", ports[0]);
    kahadb_node_options o;
    kahadb_node *n = NULL;
    const char bad_utf8[] = {(char)0xff, (char)0xfe, 0};

    /* Options. */
    node_options(&o, dir, uri, 0);
    EXPECT_RC(kahadb_node_open(NULL, &n), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_open(&o, NULL), KAHADB_ERR_NULL_ARGUMENT);
    o.directory = NULL;
    EXPECT_RC(kahadb_node_open(&o, &n), KAHADB_ERR_NULL_ARGUMENT);
    o.directory = "";
    EXPECT_RC(kahadb_node_open(&o, &n), KAHADB_ERR_INVALID_ARGUMENT);
    o.directory = bad_utf8;
    EXPECT_RC(kahadb_node_open(&o, &n), KAHADB_ERR_INVALID_ARGUMENT);
    node_options(&o, dir, NULL, 0);
    EXPECT_RC(kahadb_node_open(&o, &n), KAHADB_ERR_NULL_ARGUMENT);
    const char *bad_uris[] = {"http://127.0.0.1:1", "kdbr://127.0.0.1", "kdbr://127.0.0.1:99999",
                              "kdbr://:5", "127.0.0.1:5", "", NULL};
    for (const char **u = bad_uris; *u; u++) {
        node_options(&o, dir, *u, 0);
        int32_t rc = kahadb_node_open(&o, &n);
        CHECK(rc == KAHADB_ERR_CONFIG, "uri \"%s\" gives %s, want CONFIG", *u,
              kahadb_result_name(rc));
    }
    node_options(&o, dir, bad_utf8, 0);
    EXPECT_RC(kahadb_node_open(&o, &n), KAHADB_ERR_INVALID_ARGUMENT);
    node_options(&o, dir, uri, 0);
    o.cluster = "";
    EXPECT_RC(kahadb_node_open(&o, &n), KAHADB_ERR_CONFIG);
    node_options(&o, dir, uri, 0);
    o.transfer_sessions = 0;
    EXPECT_RC(kahadb_node_open(&o, &n), KAHADB_ERR_CONFIG);
    o.transfer_sessions = 65;
    EXPECT_RC(kahadb_node_open(&o, &n), KAHADB_ERR_CONFIG);
    node_options(&o, dir, uri, 0);
    o.store.delete_all = true;
    EXPECT_RC(kahadb_node_open(&o, &n), KAHADB_ERR_CONFIG);
    node_options(&o, dir, uri, 0);
    o.store.journal.sync_strategy = 9;
    EXPECT_RC(kahadb_node_open(&o, &n), KAHADB_ERR_CONFIG);
    node_options(&o, dir, uri, 0);
    o.store.journal.max_file_length = 10;
    EXPECT_RC(kahadb_node_open(&o, &n), KAHADB_ERR_CONFIG);
    CHECK(n == NULL, "no failed open wrote a handle");

    node_options(&o, dir, uri, 0);
    o.cluster = "misuse";
    EXPECT_RC(kahadb_node_open(&o, &n), KAHADB_OK);

    /* NULL handles. */
    uint8_t *data = NULL;
    size_t len = 0;
    int32_t role = 0;
    uint64_t epoch = 0;
    bool ok = true;
    kahadb_store *s = NULL;
    EXPECT_RC(kahadb_node_start_master(NULL, 1), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_start_slave(NULL, uri), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_promote(NULL, 1), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_demote(NULL, uri), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_stop(NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_role(NULL, &role), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_epoch(NULL, &epoch), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_status_json(NULL, &data, &len), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_set_minimum_replicas(NULL, 1), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_set_replication_timeout(NULL, 1), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_wait_live_slaves(NULL, 1, 0, &ok), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_store(NULL, &s), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_close(NULL), KAHADB_ERR_NULL_ARGUMENT);

    /* NULL arguments and outputs. */
    EXPECT_RC(kahadb_node_start_slave(n, NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_demote(n, NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_role(n, NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_epoch(n, NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_status_json(n, NULL, &len), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_status_json(n, &data, NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_wait_live_slaves(n, 1, 0, NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_node_store(n, NULL), KAHADB_ERR_NULL_ARGUMENT);

    /* Made-up handles and handles of another type. */
    kahadb_node *bogus = (kahadb_node *)&role;
    EXPECT_RC(kahadb_node_role(bogus, &role), KAHADB_ERR_INVALID_HANDLE);
    EXPECT_RC(kahadb_node_start_master(bogus, 1), KAHADB_ERR_INVALID_HANDLE);
    EXPECT_RC(kahadb_node_close(bogus), KAHADB_ERR_INVALID_HANDLE);
    char store_dir[4096];
    snprintf(store_dir, sizeof store_dir, "%s/node-misuse-store", scratch);
    EXPECT_RC(kahadb_store_open(store_dir, NULL, &s), KAHADB_OK);
    EXPECT_RC(kahadb_node_role((kahadb_node *)s, &role), KAHADB_ERR_INVALID_HANDLE);
    EXPECT_RC(kahadb_node_close((kahadb_node *)s), KAHADB_ERR_INVALID_HANDLE);
    EXPECT_RC(kahadb_store_checkpoint((kahadb_store *)n), KAHADB_ERR_INVALID_HANDLE);
    EXPECT_RC(kahadb_store_close((kahadb_store *)n), KAHADB_ERR_INVALID_HANDLE);
    EXPECT_RC(kahadb_journal_sync((kahadb_journal *)n), KAHADB_ERR_INVALID_HANDLE);
    EXPECT_RC(kahadb_store_close(s), KAHADB_OK);

    /* Bad master addresses, including the node's own. */
    EXPECT_RC(kahadb_node_start_slave(n, uri), KAHADB_ERR_CONFIG);
    EXPECT_RC(kahadb_node_start_slave(n, "kdbr://localhost"), KAHADB_ERR_CONFIG);
    EXPECT_RC(kahadb_node_start_slave(n, "tcp://127.0.0.1:61616"), KAHADB_ERR_CONFIG);
    EXPECT_RC(kahadb_node_start_slave(n, bad_utf8), KAHADB_ERR_INVALID_ARGUMENT);
    CHECK(role_of(n) == KAHADB_ROLE_STOPPED, "refused requests leave the node stopped");

    /* Requests that do not fit the role. */
    EXPECT_RC(kahadb_node_store(n, &s), KAHADB_ERR_ILLEGAL_STATE);
    EXPECT_RC(kahadb_node_promote(n, 1), KAHADB_ERR_ILLEGAL_STATE);
    EXPECT_RC(kahadb_node_demote(n, "kdbr://127.0.0.1:1"), KAHADB_ERR_ILLEGAL_STATE);
    ok = true;
    EXPECT_RC(kahadb_node_wait_live_slaves(n, 0, 0, &ok), KAHADB_OK);
    CHECK(!ok, "a stopped node has no live slaves to wait for");

    /* Stale epochs. */
    EXPECT_RC(kahadb_node_start_master(n, 5), KAHADB_OK);
    ok = false;
    EXPECT_RC(kahadb_node_wait_live_slaves(n, 0, 0, &ok), KAHADB_OK);
    CHECK(ok, "a master has at least 0 live slaves");
    /* The directory is the node's while it is master. */
    EXPECT_RC(kahadb_store_open(dir, NULL, &s), KAHADB_ERR_LOCKED);
    EXPECT_RC(kahadb_node_stop(n), KAHADB_OK);
    EXPECT_RC(kahadb_node_start_master(n, 4), KAHADB_ERR_ILLEGAL_STATE);
    CHECK(epoch_of(n) == 5, "a stale epoch changes nothing");
    CHECK(role_of(n) == KAHADB_ROLE_STOPPED, "a stale epoch leaves the node stopped");

    /* An address in use. */
    int busy_port = 0;
    int busy = listen_on(&busy_port);
    CHECK(busy >= 0, "a listening socket");
    char busy_uri[64], busy_dir[4096];
    snprintf(busy_uri, sizeof busy_uri, "kdbr://127.0.0.1:%d", busy_port);
    snprintf(busy_dir, sizeof busy_dir, "%s/node-busy", scratch);
    kahadb_node *m = NULL;
    node_options(&o, busy_dir, busy_uri, 0);
    EXPECT_RC(kahadb_node_open(&o, &m), KAHADB_OK);
    EXPECT_RC(kahadb_node_start_master(m, 1), KAHADB_ERR_IO);
    CHECK(role_of(m) == KAHADB_ROLE_STOPPED && epoch_of(m) == 0,
          "a master that cannot listen changes nothing");
    if (busy >= 0) close(busy);
    EXPECT_RC(kahadb_node_close(m), KAHADB_OK);

    /* Closed handles: an error, never a crash. */
    EXPECT_RC(kahadb_node_close(n), KAHADB_OK);
    EXPECT_RC(kahadb_node_close(n), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_node_start_master(n, 6), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_node_start_slave(n, "kdbr://127.0.0.1:1"), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_node_promote(n, 6), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_node_demote(n, "kdbr://127.0.0.1:1"), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_node_stop(n), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_node_role(n, &role), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_node_epoch(n, &epoch), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_node_status_json(n, &data, &len), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_node_set_minimum_replicas(n, 1), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_node_set_replication_timeout(n, 1), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_node_wait_live_slaves(n, 1, 0, &ok), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_node_store(n, &s), KAHADB_ERR_CLOSED);

    /* The directory is free again. */
    EXPECT_RC(kahadb_store_open(dir, NULL, &s), KAHADB_OK);
    EXPECT_RC(kahadb_store_close(s), KAHADB_OK);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    test_defaults();
    test_replication(argv[1]);
    test_misuse(argv[1]);
    printf("C node tests against kahadb %s\n", kahadb_version());
    printf("c-node: %d passed, %d failed\n", checks - failures, failures);
    return failures == 0 ? 0 : 1;
}
