/*
 * The elected node's C ABI from a C program, with the static elector (no ZooKeeper): the
 * became-master callback with its epoch, the node handle reporting master, a store write
 * through it, status-change events, close delivering STOPPED and calling free_user_data
 * exactly once, a restart at a higher epoch, and every documented misuse (NULL and closed
 * handles, a NULL callback, a failed start freeing the user data at once).
 * Built by `make test` with gcc -Wall -Wextra -Werror against include/kahadb.h.
 * Usage: election_test <scratch directory> (fresh: node directories keep their epoch)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "test_support.h"
#include "kahadb.h"

#define WAIT_MS 30000

/* What the callback saw (the dispatcher thread writes, the test thread reads). */
struct seen {
    pthread_mutex_t lock;
    int masters;
    int slaves;
    int statuses;
    int stopped;
    int after_stopped; /* events after STOPPED: must stay 0 */
    int bad_kind;
    uint64_t master_epoch;
    int status_master; /* a status event with "role":"master" */
    int frees;
    pthread_t dispatcher;
    int threads_differ; /* the callback ran on a thread other than the test's */
};

static pthread_t test_thread;

static void on_event(const kahadb_election_event *e, void *user_data) {
    struct seen *s = user_data;
    pthread_mutex_lock(&s->lock);
    if (!pthread_equal(pthread_self(), test_thread)) s->threads_differ = 1;
    if (s->stopped) s->after_stopped++;
    switch (e->kind) {
    case KAHADB_ELECTION_BECAME_MASTER:
        s->masters++;
        s->master_epoch = e->epoch;
        if (e->master_uri != NULL || e->reason != NULL || e->status_json != NULL) s->bad_kind++;
        break;
    case KAHADB_ELECTION_BECAME_SLAVE:
        s->slaves++;
        break;
    case KAHADB_ELECTION_STATUS_CHANGED:
        s->statuses++;
        if (e->status_json == NULL) {
            s->bad_kind++;
        } else if (strstr(e->status_json, "\"role\":\"master\"") != NULL) {
            s->status_master = 1;
        }
        break;
    case KAHADB_ELECTION_STOPPED:
        s->stopped++;
        if (e->reason == NULL || e->reason[0] == '\0') s->bad_kind++;
        break;
    default:
        s->bad_kind++;
    }
    pthread_mutex_unlock(&s->lock);
}

static void free_seen(void *user_data) {
    struct seen *s = user_data;
    pthread_mutex_lock(&s->lock);
    s->frees++;
    pthread_mutex_unlock(&s->lock);
}

static int frees_of(struct seen *s) {
    pthread_mutex_lock(&s->lock);
    int n = s->frees;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* A port free on 127.0.0.1 right now, or -1. */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
        port = ntohs(a.sin_port);
    }
    if (fd >= 0) close(fd);
    return port;
}

static void node_options(kahadb_node_options *o, const char *dir, const char *uri) {
    kahadb_node_options_init(o);
    o->directory = dir;
    o->uri = uri;
    o->store.journal.max_file_length = 1024 * 1024;
    o->store.journal.max_batch_size = 256 * 1024;
    o->store.journal.preallocation = KAHADB_PREALLOC_SPARSE;
}

/* Waits until the callback has seen a became-master event; returns whether it did. */
static int wait_master(struct seen *s, int count) {
    long long deadline = now_ms() + WAIT_MS;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        int n = s->masters;
        pthread_mutex_unlock(&s->lock);
        if (n >= count) return 1;
        if (now_ms() > deadline) return 0;
        sleep_ms(10);
    }
}

static void test_defaults(void) {
    kahadb_election_options e;
    memset(&e, 0x5a, sizeof e);
    kahadb_election_options_init(&e);
    CHECK(e.zookeeper == NULL, "static elector by default");
    CHECK(e.path == NULL, "default path");
    CHECK(e.session_timeout_ms == 10000, "session timeout %llu",
          (unsigned long long)e.session_timeout_ms);
    kahadb_election_options_init(NULL);
}

static void test_static(const char *scratch) {
    char dir[512], uri[64];
    snprintf(dir, sizeof dir, "%s/elected-static", scratch);
    snprintf(uri, sizeof uri, "kdbr://127.0.0.1:%d", free_port());
    kahadb_node_options no;
    node_options(&no, dir, uri);
    kahadb_election_options eo;
    kahadb_election_options_init(&eo);

    struct seen s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.lock, NULL);
    kahadb_elected_node *en = NULL;
    EXPECT_RC(kahadb_elected_node_start(&no, &eo, on_event, &s, free_seen, &en), KAHADB_OK);
    CHECK(en != NULL, "a handle");
    CHECK(wait_master(&s, 1), "a became-master event within %d ms", WAIT_MS);
    pthread_mutex_lock(&s.lock);
    CHECK(s.master_epoch >= 1, "epoch %llu", (unsigned long long)s.master_epoch);
    uint64_t first_epoch = s.master_epoch;
    pthread_mutex_unlock(&s.lock);

    kahadb_node *n = NULL;
    EXPECT_RC(kahadb_elected_node_node(en, &n), KAHADB_OK);
    int32_t role = -1;
    EXPECT_RC(kahadb_node_role(n, &role), KAHADB_OK);
    CHECK(role == KAHADB_ROLE_MASTER, "role %d", role);
    uint64_t epoch = 0;
    EXPECT_RC(kahadb_node_epoch(n, &epoch), KAHADB_OK);
    CHECK(epoch == first_epoch, "node epoch %llu, event %llu", (unsigned long long)epoch,
          (unsigned long long)first_epoch);

    kahadb_store *st = NULL;
    EXPECT_RC(kahadb_node_store(n, &st), KAHADB_OK);
    const char *body = "hello";
    int64_t seq = -1;
    EXPECT_RC(kahadb_store_add(st, KAHADB_DEST_QUEUE, "orders", "id:1", 4, false,
                               (const uint8_t *)body, strlen(body), true, &seq),
              KAHADB_OK);
    uint64_t count = 0, bytes = 0;
    EXPECT_RC(kahadb_store_counts(st, KAHADB_DEST_QUEUE, "orders", NULL, &count, &bytes),
              KAHADB_OK);
    CHECK(count == 1, "count %llu", (unsigned long long)count);
    EXPECT_RC(kahadb_store_close(st), KAHADB_OK);

    /* The status events follow the node: one of them shows it master. */
    long long deadline = now_ms() + WAIT_MS;
    for (;;) {
        pthread_mutex_lock(&s.lock);
        int ok = s.status_master;
        pthread_mutex_unlock(&s.lock);
        if (ok || now_ms() > deadline) break;
        sleep_ms(10);
    }
    CHECK(s.status_master, "a status event with the master role");

    /* A second node handle; closing it only releases it. */
    kahadb_node *n2 = NULL;
    EXPECT_RC(kahadb_elected_node_node(en, &n2), KAHADB_OK);
    EXPECT_RC(kahadb_node_close(n2), KAHADB_OK);
    EXPECT_RC(kahadb_node_close(n2), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_node_role(n, &role), KAHADB_OK);
    CHECK(role == KAHADB_ROLE_MASTER, "still master after a node handle was released: %d", role);

    CHECK(frees_of(&s) == 0, "user data not freed while open");
    EXPECT_RC(kahadb_elected_node_close(en), KAHADB_OK);
    CHECK(frees_of(&s) == 1, "free_user_data called once by close: %d", frees_of(&s));
    pthread_mutex_lock(&s.lock);
    CHECK(s.stopped == 1, "one STOPPED event: %d", s.stopped);
    CHECK(s.after_stopped == 0, "%d events after STOPPED", s.after_stopped);
    CHECK(s.bad_kind == 0, "%d malformed events", s.bad_kind);
    CHECK(s.masters == 1 && s.slaves == 0, "masters %d slaves %d", s.masters, s.slaves);
    CHECK(s.threads_differ, "callbacks on a thread of their own");
    pthread_mutex_unlock(&s.lock);

    EXPECT_RC(kahadb_node_role(n, &role), KAHADB_OK);
    CHECK(role == KAHADB_ROLE_STOPPED, "stopped after close: %d", role);
    EXPECT_RC(kahadb_elected_node_close(en), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_elected_node_node(en, &n2), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_node_close(n), KAHADB_OK);
    sleep_ms(100);
    CHECK(frees_of(&s) == 1, "free_user_data still called once: %d", frees_of(&s));

    /* Started again on the same directory: master at a higher epoch. */
    struct seen s2;
    memset(&s2, 0, sizeof s2);
    pthread_mutex_init(&s2.lock, NULL);
    EXPECT_RC(kahadb_elected_node_start(&no, &eo, on_event, &s2, free_seen, &en), KAHADB_OK);
    CHECK(wait_master(&s2, 1), "a became-master event after a restart");
    pthread_mutex_lock(&s2.lock);
    CHECK(s2.master_epoch > first_epoch, "epoch %llu after %llu",
          (unsigned long long)s2.master_epoch, (unsigned long long)first_epoch);
    pthread_mutex_unlock(&s2.lock);
    EXPECT_RC(kahadb_elected_node_close(en), KAHADB_OK);
    CHECK(frees_of(&s2) == 1, "free_user_data called once: %d", frees_of(&s2));
    pthread_mutex_destroy(&s.lock);
    pthread_mutex_destroy(&s2.lock);
}

static void test_misuse(const char *scratch) {
    char dir[512], uri[64];
    snprintf(dir, sizeof dir, "%s/elected-misuse", scratch);
    snprintf(uri, sizeof uri, "kdbr://127.0.0.1:%d", free_port());
    kahadb_node_options no;
    node_options(&no, dir, uri);
    kahadb_election_options eo;
    kahadb_election_options_init(&eo);
    struct seen s;
    memset(&s, 0, sizeof s);
    pthread_mutex_init(&s.lock, NULL);
    kahadb_elected_node *en = NULL;

    /* Every failed start frees the user data at once, exactly once. */
    EXPECT_RC(kahadb_elected_node_start(&no, &eo, NULL, &s, free_seen, &en),
              KAHADB_ERR_NULL_ARGUMENT);
    CHECK(frees_of(&s) == 1, "freed on a NULL callback: %d", frees_of(&s));
    EXPECT_RC(kahadb_elected_node_start(NULL, &eo, on_event, &s, free_seen, &en),
              KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_elected_node_start(&no, NULL, on_event, &s, free_seen, &en),
              KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_elected_node_start(&no, &eo, on_event, &s, free_seen, NULL),
              KAHADB_ERR_NULL_ARGUMENT);
    CHECK(frees_of(&s) == 4, "freed on each failure: %d", frees_of(&s));
    kahadb_node_options bad = no;
    bad.uri = "not-a-uri";
    EXPECT_RC(kahadb_elected_node_start(&bad, &eo, on_event, &s, free_seen, &en),
              KAHADB_ERR_CONFIG);
    bad = no;
    bad.directory = NULL;
    EXPECT_RC(kahadb_elected_node_start(&bad, &eo, on_event, &s, free_seen, &en),
              KAHADB_ERR_NULL_ARGUMENT);
    kahadb_election_options zk = eo;
    zk.zookeeper = "127.0.0.1:1";
    zk.path = "relative/path";
    EXPECT_RC(kahadb_elected_node_start(&no, &zk, on_event, &s, free_seen, &en),
              KAHADB_ERR_CONFIG);
    zk.path = NULL;
    zk.session_timeout_ms = 10;
    EXPECT_RC(kahadb_elected_node_start(&no, &zk, on_event, &s, free_seen, &en),
              KAHADB_ERR_CONFIG);
    CHECK(frees_of(&s) == 8, "freed on each failure: %d", frees_of(&s));
    CHECK(en == NULL, "no handle written on failure");
    /* A NULL free function is allowed. */
    EXPECT_RC(kahadb_elected_node_start(&no, &eo, on_event, &s, NULL, NULL),
              KAHADB_ERR_NULL_ARGUMENT);
    pthread_mutex_lock(&s.lock);
    CHECK(s.masters == 0 && s.statuses == 0 && s.stopped == 0, "no callbacks after failures");
    pthread_mutex_unlock(&s.lock);

    kahadb_node *n = NULL;
    EXPECT_RC(kahadb_elected_node_node(NULL, &n), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_elected_node_close(NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_elected_node_close((kahadb_elected_node *)(uintptr_t)0x1234),
              KAHADB_ERR_INVALID_HANDLE);
    EXPECT_RC(kahadb_elected_node_node((kahadb_elected_node *)(uintptr_t)0x1234, &n),
              KAHADB_ERR_INVALID_HANDLE);

    /* A node handle is not an elected node handle, and the other way round. */
    EXPECT_RC(kahadb_elected_node_start(&no, &eo, on_event, &s, free_seen, &en), KAHADB_OK);
    CHECK(wait_master(&s, 1), "master");
    EXPECT_RC(kahadb_elected_node_node(en, NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_elected_node_node(en, &n), KAHADB_OK);
    EXPECT_RC(kahadb_elected_node_close((kahadb_elected_node *)n), KAHADB_ERR_INVALID_HANDLE);
    int32_t role = -1;
    EXPECT_RC(kahadb_node_role((kahadb_node *)en, &role), KAHADB_ERR_INVALID_HANDLE);
    /* A second start on the same directory while the first holds it fails, freeing at once. */
    struct seen s2;
    memset(&s2, 0, sizeof s2);
    pthread_mutex_init(&s2.lock, NULL);
    kahadb_elected_node *en2 = NULL;
    int32_t rc = kahadb_elected_node_start(&no, &eo, on_event, &s2, free_seen, &en2);
    if (rc == KAHADB_OK) {
        /* The node opened; its election must then fail to make it master (the directory is
         * locked): close it all the same. */
        EXPECT_RC(kahadb_elected_node_close(en2), KAHADB_OK);
        pthread_mutex_lock(&s2.lock);
        CHECK(s2.masters == 0, "the second node never became master: %d", s2.masters);
        CHECK(s2.stopped >= 1 && s2.after_stopped == 0, "STOPPED last: %d, %d after it",
              s2.stopped, s2.after_stopped);
        pthread_mutex_unlock(&s2.lock);
    }
    CHECK(frees_of(&s2) == 1, "second start: freed once: %d", frees_of(&s2));
    EXPECT_RC(kahadb_node_close(n), KAHADB_OK);
    EXPECT_RC(kahadb_elected_node_close(en), KAHADB_OK);
    CHECK(frees_of(&s) == 9, "freed once more by close: %d", frees_of(&s));
    pthread_mutex_destroy(&s.lock);
    pthread_mutex_destroy(&s2.lock);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    test_thread = pthread_self();
    test_defaults();
    test_static(argv[1]);
    test_misuse(argv[1]);
    printf("C election tests against kahadb %s\n", kahadb_version());
    printf("c-election: %d passed, %d failed\n", checks - failures, failures);
    return failures == 0 ? 0 : 1;
}
