/*
 * The store's C ABI from a C program: queues, topics, local and XA transactions (packed
 * buffers built and parsed here, in C), reopen and delete-all, and every documented misuse.
 * Built by `make test` with gcc -Wall -Wextra -Werror against include/kahadb.h.
 * Usage: store_test <scratch directory>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"
#include "kahadb.h"

#define Q KAHADB_DEST_QUEUE
#define T KAHADB_DEST_TOPIC

/* ---- Building packed buffers (big-endian; string/bytes = i32 length + bytes). ---- */

typedef struct {
    uint8_t data[4096];
    size_t len;
} packer;

static void put(packer *p, const void *src, size_t n) {
    if (p->len + n > sizeof p->data) {
        fprintf(stderr, "packer overflow\n");
        exit(2);
    }
    memcpy(p->data + p->len, src, n);
    p->len += n;
}

static void put_u8(packer *p, int v) {
    uint8_t b = (uint8_t)v;
    put(p, &b, 1);
}

static void put_i32(packer *p, int32_t v) {
    uint32_t u = (uint32_t)v;
    uint8_t b[4] = {(uint8_t)(u >> 24), (uint8_t)(u >> 16), (uint8_t)(u >> 8), (uint8_t)u};
    put(p, b, 4);
}

static void put_i64(packer *p, int64_t v) {
    uint64_t u = (uint64_t)v;
    put_i32(p, (int32_t)(uint32_t)(u >> 32));
    put_i32(p, (int32_t)(uint32_t)u);
}

static void put_bytes(packer *p, const void *b, size_t n) {
    put_i32(p, (int32_t)n);
    put(p, b, n);
}

static void put_str(packer *p, const char *s) { put_bytes(p, s, strlen(s)); }

static void put_none(packer *p) { put_i32(p, -1); }

static packer local_tx(const char *connection, int64_t id) {
    packer p = {.len = 0};
    put_u8(&p, KAHADB_TX_LOCAL);
    put_str(&p, connection);
    put_i64(&p, id);
    return p;
}

static packer xa_tx(int32_t format, const char *global, const char *branch) {
    packer p = {.len = 0};
    put_u8(&p, KAHADB_TX_XA);
    put_i32(&p, format);
    put_str(&p, global);
    put_str(&p, branch);
    return p;
}

static void op_add(packer *p, int dest_type, const char *dest, const char *id, int32_t priority,
                   const char *body) {
    put_u8(p, KAHADB_OP_ADD);
    put_u8(p, dest_type);
    put_str(p, dest);
    put_str(p, id);
    put_i32(p, priority);
    put_u8(p, 0);
    put_str(p, body);
}

/* subscription and ack may be NULL (none). */
static void op_remove(packer *p, int dest_type, const char *dest, const char *id,
                      const char *subscription, const char *ack) {
    put_u8(p, KAHADB_OP_REMOVE);
    put_u8(p, dest_type);
    put_str(p, dest);
    put_str(p, id);
    if (subscription) put_str(p, subscription); else put_none(p);
    if (ack) put_str(p, ack); else put_none(p);
}

/* ---- Reading returned packed buffers. A reader turns `ok` off on any overrun. ---- */

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

static int get_u8(reader *r) {
    const uint8_t *b = take(r, 1);
    return b ? b[0] : -1;
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

/* bytes? : returns the length (-1 for none) and points *out at the bytes. */
static int32_t get_bytes(reader *r, const uint8_t **out) {
    int32_t n = get_i32(r);
    *out = NULL;
    if (n < 0) return n;
    *out = take(r, (size_t)n);
    return n;
}

/* A string copied into buf (NUL-terminated, truncated to cap). */
static void get_str(reader *r, char *buf, size_t cap) {
    const uint8_t *b;
    int32_t n = get_bytes(r, &b);
    if (n < 0 || !b) {
        r->ok = 0;
        buf[0] = 0;
        return;
    }
    size_t m = (size_t)n < cap - 1 ? (size_t)n : cap - 1;
    memcpy(buf, b, m);
    buf[m] = 0;
}

static int bytes_eq(const uint8_t *b, int32_t n, const char *want) {
    return b && n >= 0 && (size_t)n == strlen(want) && memcmp(b, want, (size_t)n) == 0;
}

typedef struct {
    int64_t sequence;
    int lane;
    char id[64];
    char body[64];
} message;

/* Parses a `messages` buffer into out[0..cap), returns the count (-1 if malformed). */
static int parse_messages(const uint8_t *data, size_t len, message *out, int cap) {
    reader r = {data, len, 0, 1};
    int32_t n = get_i32(&r);
    if (n < 0 || n > cap) return -1;
    for (int i = 0; i < n; i++) {
        out[i].sequence = get_i64(&r);
        out[i].lane = get_u8(&r);
        get_str(&r, out[i].id, sizeof out[i].id);
        get_str(&r, out[i].body, sizeof out[i].body);
    }
    return r.ok && r.pos == len ? n : -1;
}

/* Reads a destination (or a subscription's pending messages) into out; -1 on failure. */
static int read_all(kahadb_store *s, int type, const char *dest, const char *sub,
                    const kahadb_read_request *req, message *out, int cap) {
    uint8_t *data = NULL;
    size_t len = 0;
    int32_t rc = kahadb_store_read(s, type, dest, sub, req, &data, &len);
    CHECK(rc == KAHADB_OK, "read %s returned %s", dest, kahadb_result_name(rc));
    if (rc != KAHADB_OK) return -1;
    int n = parse_messages(data, len, out, cap);
    CHECK(n >= 0, "messages buffer of %s parses", dest);
    kahadb_buffer_free(data, len);
    return n;
}

static uint64_t count_of(kahadb_store *s, int type, const char *dest, const char *sub,
                         uint64_t *bytes) {
    uint64_t count = 0, b = 0;
    EXPECT_RC(kahadb_store_counts(s, type, dest, sub, &count, &b), KAHADB_OK);
    if (bytes) *bytes = b;
    return count;
}

static int32_t buffer_count(int32_t (*list)(kahadb_store *, uint8_t **, size_t *),
                            kahadb_store *s) {
    uint8_t *data = NULL;
    size_t len = 0;
    if (list(s, &data, &len) != KAHADB_OK) return -1;
    reader r = {data, len, 0, 1};
    int32_t n = get_i32(&r);
    kahadb_buffer_free(data, len);
    return r.ok ? n : -1;
}

static void small_options(kahadb_store_options *o) {
    kahadb_store_options_init(o);
    o->journal.max_file_length = 1024 * 1024;
    o->journal.max_batch_size = 256 * 1024;
    o->journal.preallocation = KAHADB_PREALLOC_SPARSE;
}

/* ---- The happy path ---- */

static int64_t queue_base;

static void test_queue(kahadb_store *s) {
    char id[64], body[64];
    int64_t seq = -2;

    EXPECT_RC(kahadb_store_next_sequence(s, Q, "orders", &queue_base), KAHADB_OK);
    CHECK(queue_base == 0, "next sequence of a new queue is %lld", (long long)queue_base);
    for (int i = 0; i < 10; i++) {
        snprintf(id, sizeof id, "ID:prod-1:1:1:%d", i);
        snprintf(body, sizeof body, "body-%d", i);
        EXPECT_RC(kahadb_store_add(s, Q, "orders", id, 4, false, (const uint8_t *)body,
                                   strlen(body), i % 2 == 0, &seq),
                  KAHADB_OK);
        CHECK(seq == queue_base + i, "message %d got sequence %lld", i, (long long)seq);
    }
    /* A duplicate id: -1, nothing stored. */
    EXPECT_RC(kahadb_store_add(s, Q, "orders", "ID:prod-1:1:1:3", 4, false,
                               (const uint8_t *)"other", 5, true, &seq),
              KAHADB_OK);
    CHECK(seq == -1, "duplicate add gives -1, got %lld", (long long)seq);
    uint64_t bytes = 0;
    CHECK(count_of(s, Q, "orders", NULL, &bytes) == 10, "10 messages stored");
    CHECK(bytes == 10 * 6, "bytes %llu", (unsigned long long)bytes);
    int64_t next = 0;
    EXPECT_RC(kahadb_store_next_sequence(s, Q, "orders", &next), KAHADB_OK);
    CHECK(next == queue_base + 10, "next sequence %lld", (long long)next);

    /* Read back in order. */
    message m[32];
    int n = read_all(s, Q, "orders", NULL, NULL, m, 32);
    CHECK(n == 10, "read %d messages", n);
    for (int i = 0; i < n && i < 10; i++) {
        snprintf(id, sizeof id, "ID:prod-1:1:1:%d", i);
        snprintf(body, sizeof body, "body-%d", i);
        CHECK(m[i].sequence == queue_base + i && m[i].lane == KAHADB_LANE_DEFAULT &&
                  strcmp(m[i].id, id) == 0 && strcmp(m[i].body, body) == 0,
              "message %d read back: seq %lld lane %d id %s body %s", i,
              (long long)m[i].sequence, m[i].lane, m[i].id, m[i].body);
    }

    /* Batches: count, continuation, limit, bytes. */
    kahadb_read_request req;
    kahadb_read_request_init(&req);
    CHECK(req.limit < 0 && req.max_count == SIZE_MAX && req.from_default == 0, "request defaults");
    req.max_count = 3;
    n = read_all(s, Q, "orders", NULL, &req, m, 32);
    CHECK(n == 3 && m[2].sequence == queue_base + 2, "first batch of 3");
    req.from_default = m[2].sequence + 1;
    n = read_all(s, Q, "orders", NULL, &req, m, 32);
    CHECK(n == 3 && m[0].sequence == queue_base + 3, "second batch continues at 3");
    kahadb_read_request_init(&req);
    req.limit = queue_base + 5;
    n = read_all(s, Q, "orders", NULL, &req, m, 32);
    CHECK(n == 5, "limit returns %d, want 5", n);
    kahadb_read_request_init(&req);
    req.max_bytes = 1;
    n = read_all(s, Q, "orders", NULL, &req, m, 32);
    CHECK(n == 1, "max_bytes 1 returns %d, want 1", n);

    /* get_message: present, absent. */
    uint8_t *data = NULL;
    size_t len = 0;
    EXPECT_RC(kahadb_store_get_message(s, Q, "orders", "ID:prod-1:1:1:4", &data, &len), KAHADB_OK);
    CHECK(len == 6 && memcmp(data, "body-4", 6) == 0, "get_message body");
    kahadb_buffer_free(data, len);
    data = (uint8_t *)"untouched";
    len = 77;
    EXPECT_RC(kahadb_store_get_message(s, Q, "orders", "ID:nope:1:1:1", &data, &len),
              KAHADB_ERR_NOT_FOUND);
    CHECK(len == 77 && strcmp((const char *)data, "untouched") == 0, "outputs untouched on NOT_FOUND");
    CHECK(strlen(kahadb_last_error()) > 0, "NOT_FOUND sets the last error");

    /* Update in place: same sequence, new body. */
    EXPECT_RC(kahadb_store_update(s, Q, "orders", "ID:prod-1:1:1:2", 4, false,
                                  (const uint8_t *)"updated-2", 9, true, &seq),
              KAHADB_OK);
    CHECK(seq == -1, "update in place gives -1, got %lld", (long long)seq);
    EXPECT_RC(kahadb_store_get_message(s, Q, "orders", "ID:prod-1:1:1:2", &data, &len), KAHADB_OK);
    CHECK(len == 9 && memcmp(data, "updated-2", 9) == 0, "updated body");
    kahadb_buffer_free(data, len);
    CHECK(count_of(s, Q, "orders", NULL, NULL) == 10, "update keeps the count");

    /* Remove, and remove again. */
    kahadb_removed r = {false, false, 0};
    EXPECT_RC(kahadb_store_remove(s, Q, "orders", "ID:prod-1:1:1:0", true, &r), KAHADB_OK);
    CHECK(r.found && r.deleted && r.size == 6, "remove: found %d deleted %d size %u", r.found,
          r.deleted, r.size);
    EXPECT_RC(kahadb_store_remove(s, Q, "orders", "ID:prod-1:1:1:0", true, &r), KAHADB_OK);
    CHECK(!r.found && !r.deleted && r.size == 0, "second remove finds nothing");
    EXPECT_RC(kahadb_store_remove(s, Q, "orders", "ID:prod-1:1:1:9", false, NULL), KAHADB_OK);
    CHECK(count_of(s, Q, "orders", NULL, &bytes) == 8, "8 left after two removes");
    CHECK(bytes == 7 * 6 + 9, "bytes after removes %llu", (unsigned long long)bytes);

    /* Priorities: lanes high, default, low. */
    EXPECT_RC(kahadb_store_add(s, Q, "prio", "ID:prod-9:1:1:1", 1, true, (const uint8_t *)"low", 3,
                               true, NULL),
              KAHADB_OK);
    EXPECT_RC(kahadb_store_add(s, Q, "prio", "ID:prod-9:1:1:2", 4, true, (const uint8_t *)"mid", 3,
                               true, NULL),
              KAHADB_OK);
    EXPECT_RC(kahadb_store_add(s, Q, "prio", "ID:prod-9:1:1:3", 9, true,
                               (const uint8_t *)"high", 4, true, NULL),
              KAHADB_OK);
    n = read_all(s, Q, "prio", NULL, NULL, m, 32);
    CHECK(n == 3 && m[0].lane == KAHADB_LANE_HIGH && strcmp(m[0].body, "high") == 0 &&
              m[1].lane == KAHADB_LANE_DEFAULT && m[2].lane == KAHADB_LANE_LOW &&
              strcmp(m[2].body, "low") == 0,
          "lanes in order high, default, low");

    int64_t last = 0;
    EXPECT_RC(kahadb_store_last_producer_sequence(s, "ID:prod-1:1:1", &last), KAHADB_OK);
    CHECK(last == 9, "last producer sequence %lld", (long long)last);
    EXPECT_RC(kahadb_store_last_producer_sequence(s, "ID:unknown:1:1", &last), KAHADB_OK);
    CHECK(last == -1, "unknown producer gives -1");
}

static void test_topic(kahadb_store *s) {
    kahadb_removed r;
    int64_t seq = -2;
    EXPECT_RC(kahadb_store_subscribe(s, T, "prices", "client-1:sub-a", (const uint8_t *)"info-a",
                                     6, false, true),
              KAHADB_OK);
    EXPECT_RC(kahadb_store_subscribe(s, T, "prices", "client-2:sub-b", (const uint8_t *)"info-b",
                                     6, false, true),
              KAHADB_OK);

    uint8_t *data = NULL;
    size_t len = 0;
    EXPECT_RC(kahadb_store_subscriptions(s, T, "prices", &data, &len), KAHADB_OK);
    reader rd = {data, len, 0, 1};
    int32_t n = get_i32(&rd);
    int saw_a = 0, saw_b = 0;
    for (int32_t i = 0; i < n && rd.ok; i++) {
        char key[64];
        const uint8_t *info;
        get_str(&rd, key, sizeof key);
        int32_t info_len = get_bytes(&rd, &info);
        if (strcmp(key, "client-1:sub-a") == 0) saw_a = bytes_eq(info, info_len, "info-a");
        if (strcmp(key, "client-2:sub-b") == 0) saw_b = bytes_eq(info, info_len, "info-b");
    }
    CHECK(rd.ok && rd.pos == len && n == 2 && saw_a && saw_b, "two subscriptions listed with info");
    kahadb_buffer_free(data, len);

    EXPECT_RC(kahadb_store_add(s, T, "prices", "ID:prod-2:1:1:1", 4, false,
                               (const uint8_t *)"tick", 4, true, &seq),
              KAHADB_OK);
    CHECK(seq >= 0, "topic add gets a sequence, got %lld", (long long)seq);
    EXPECT_RC(kahadb_store_add(s, T, "lonely", "ID:prod-2:1:1:2", 4, false,
                               (const uint8_t *)"tick", 4, true, &seq),
              KAHADB_OK);
    CHECK(seq == -1, "topic add without subscriptions gives -1, got %lld", (long long)seq);

    CHECK(count_of(s, T, "prices", NULL, NULL) == 1, "topic stores 1");
    CHECK(count_of(s, T, "prices", "client-1:sub-a", NULL) == 1, "sub-a has 1 pending");
    CHECK(count_of(s, T, "prices", "client-2:sub-b", NULL) == 1, "sub-b has 1 pending");
    CHECK(count_of(s, T, "prices", "client-9:none", NULL) == 0, "unknown subscription counts 0");
    message m[4];
    CHECK(read_all(s, T, "prices", "client-1:sub-a", NULL, m, 4) == 1 &&
              strcmp(m[0].id, "ID:prod-2:1:1:1") == 0,
          "sub-a reads its message");

    EXPECT_RC(kahadb_store_ack(s, T, "prices", "client-1:sub-a", "ID:prod-2:1:1:1", true, &r),
              KAHADB_OK);
    CHECK(r.found && !r.deleted && r.size == 4, "ack a: found, kept for b");
    EXPECT_RC(kahadb_store_ack(s, T, "prices", "client-1:sub-a", "ID:prod-2:1:1:1", true, &r),
              KAHADB_OK);
    CHECK(!r.found && !r.deleted, "second ack a finds nothing");
    CHECK(count_of(s, T, "prices", "client-1:sub-a", NULL) == 0, "sub-a has 0 pending");
    CHECK(read_all(s, T, "prices", "client-1:sub-a", NULL, m, 4) == 0, "sub-a reads nothing");

    /* A retroactive subscription gets what is stored. */
    EXPECT_RC(kahadb_store_subscribe(s, T, "prices", "client-3:sub-c", NULL, 0, true, true),
              KAHADB_OK);
    CHECK(count_of(s, T, "prices", "client-3:sub-c", NULL) == 1, "retroactive sub-c has 1 pending");
    EXPECT_RC(kahadb_store_ack(s, T, "prices", "client-2:sub-b", "ID:prod-2:1:1:1", true, &r),
              KAHADB_OK);
    CHECK(r.found && !r.deleted, "ack b: found, kept for c");
    EXPECT_RC(kahadb_store_ack(s, T, "prices", "client-3:sub-c", "ID:prod-2:1:1:1", true, &r),
              KAHADB_OK);
    CHECK(r.found && r.deleted && r.size == 4, "ack c: the last one, deleted");
    CHECK(count_of(s, T, "prices", NULL, NULL) == 0, "topic is empty");

    bool found = false;
    EXPECT_RC(kahadb_store_unsubscribe(s, T, "prices", "client-1:sub-a", true, &found), KAHADB_OK);
    CHECK(found, "unsubscribe a found it");
    EXPECT_RC(kahadb_store_unsubscribe(s, T, "prices", "client-1:sub-a", true, &found), KAHADB_OK);
    CHECK(!found, "second unsubscribe finds nothing");
    EXPECT_RC(kahadb_store_subscriptions(s, T, "prices", &data, &len), KAHADB_OK);
    rd = (reader){data, len, 0, 1};
    CHECK(get_i32(&rd) == 2, "two subscriptions left");
    kahadb_buffer_free(data, len);
}

static void test_local_tx(kahadb_store *s) {
    int64_t next = 0;
    EXPECT_RC(kahadb_store_next_sequence(s, Q, "orders", &next), KAHADB_OK);
    uint64_t before = count_of(s, Q, "orders", NULL, NULL);

    packer tx = local_tx("ID:conn-1:1", 7);
    packer ops = {.len = 0};
    put_i32(&ops, 3);
    op_add(&ops, Q, "orders", "ID:prod-3:1:1:1", 4, "tx-one");
    op_add(&ops, Q, "orders", "ID:prod-3:1:1:2", 4, "tx-two");
    op_remove(&ops, Q, "orders", "ID:prod-1:1:1:1", NULL, NULL);

    kahadb_tx_outcome out[8];
    size_t count = 0;
    EXPECT_RC(kahadb_store_commit(s, tx.data, tx.len, ops.data, ops.len, true, out, 8, &count),
              KAHADB_OK);
    CHECK(count == 3, "3 outcomes, got %zu", count);
    CHECK(out[0].kind == KAHADB_OP_ADD && out[0].sequence == next && out[0].size == 6,
          "outcome 0: add at %lld", (long long)out[0].sequence);
    CHECK(out[1].kind == KAHADB_OP_ADD && out[1].sequence == next + 1, "outcome 1: add");
    CHECK(out[2].kind == KAHADB_OP_REMOVE && out[2].sequence == -1 && out[2].found &&
              out[2].deleted && out[2].size == 6,
          "outcome 2: remove found %d size %u", out[2].found, out[2].size);
    CHECK(count_of(s, Q, "orders", NULL, NULL) == before + 1, "count after the transaction");

    /* Fewer slots than operations: the first ones, and the full count. */
    tx = local_tx("ID:conn-1:1", 8);
    ops.len = 0;
    put_i32(&ops, 2);
    op_add(&ops, Q, "orders", "ID:prod-3:1:1:3", 4, "tx-three");
    op_add(&ops, Q, "orders", "ID:prod-3:1:1:4", 4, "tx-four");
    kahadb_tx_outcome two[2];
    two[1].kind = 42;
    EXPECT_RC(kahadb_store_commit(s, tx.data, tx.len, ops.data, ops.len, false, two, 1, &count),
              KAHADB_OK);
    CHECK(count == 2 && two[0].sequence == next + 2 && two[1].kind == 42,
          "capacity 1: count %zu, second slot untouched", count);

    /* No outcomes wanted; an empty transaction. */
    tx = local_tx("ID:conn-1:1", 9);
    ops.len = 0;
    put_i32(&ops, 1);
    op_add(&ops, Q, "orders", "ID:prod-3:1:1:5", 4, "tx-five");
    EXPECT_RC(kahadb_store_commit(s, tx.data, tx.len, ops.data, ops.len, true, NULL, 0, NULL),
              KAHADB_OK);
    ops.len = 0;
    put_i32(&ops, 0);
    count = 99;
    EXPECT_RC(kahadb_store_commit(s, tx.data, tx.len, ops.data, ops.len, true, out, 8, &count),
              KAHADB_OK);
    CHECK(count == 0, "empty transaction: 0 outcomes");
    CHECK(count_of(s, Q, "orders", NULL, NULL) == before + 4, "count after all transactions");
}

static packer xa_ops(void) {
    packer ops = {.len = 0};
    put_i32(&ops, 2);
    op_add(&ops, Q, "orders", "ID:prod-4:1:1:1", 4, "xa-body");
    op_remove(&ops, Q, "orders", "ID:prod-1:1:1:2", NULL, "ack-bytes");
    return ops;
}

/* Checks the prepared list holds exactly the transaction of test_xa. */
static void check_prepared_list(kahadb_store *s) {
    uint8_t *data = NULL;
    size_t len = 0;
    EXPECT_RC(kahadb_store_prepared(s, &data, &len), KAHADB_OK);
    reader r = {data, len, 0, 1};
    CHECK(get_i32(&r) == 1, "one prepared transaction");
    CHECK(get_u8(&r) == KAHADB_TX_XA, "XA id");
    CHECK(get_i32(&r) == 0x1234, "format id");
    const uint8_t *b;
    int32_t n = get_bytes(&r, &b);
    CHECK(bytes_eq(b, n, "gtrid-1"), "global id");
    n = get_bytes(&r, &b);
    CHECK(bytes_eq(b, n, "bq-1"), "branch qualifier");
    CHECK(get_i32(&r) == 2, "two operations");
    char str[64];
    CHECK(get_u8(&r) == KAHADB_OP_ADD && get_u8(&r) == Q, "op 0 is an add to a queue");
    get_str(&r, str, sizeof str);
    CHECK(strcmp(str, "orders") == 0, "op 0 destination %s", str);
    get_str(&r, str, sizeof str);
    CHECK(strcmp(str, "ID:prod-4:1:1:1") == 0, "op 0 id %s", str);
    CHECK(get_i32(&r) == 4 && get_u8(&r) == 0, "op 0 priority");
    n = get_bytes(&r, &b);
    CHECK(bytes_eq(b, n, "xa-body"), "op 0 body");
    CHECK(get_u8(&r) == KAHADB_OP_REMOVE && get_u8(&r) == Q, "op 1 is a queue remove");
    get_str(&r, str, sizeof str);
    get_str(&r, str, sizeof str);
    CHECK(strcmp(str, "ID:prod-1:1:1:2") == 0, "op 1 id %s", str);
    CHECK(get_bytes(&r, &b) == -1, "op 1 has no subscription");
    n = get_bytes(&r, &b);
    CHECK(bytes_eq(b, n, "ack-bytes"), "op 1 keeps its ack");
    CHECK(r.ok && r.pos == len, "prepared buffer fully parsed");
    kahadb_buffer_free(data, len);
}

static kahadb_store *test_xa(kahadb_store *s, const char *dir, const kahadb_store_options *opts) {
    packer tx = xa_tx(0x1234, "gtrid-1", "bq-1");
    packer ops = xa_ops();
    uint64_t before = count_of(s, Q, "orders", NULL, NULL);
    EXPECT_RC(kahadb_store_prepare(s, tx.data, tx.len, ops.data, ops.len), KAHADB_OK);
    EXPECT_RC(kahadb_store_prepare(s, tx.data, tx.len, ops.data, ops.len), KAHADB_ERR_ILLEGAL_STATE);
    packer local = local_tx("ID:conn-2:1", 1);
    EXPECT_RC(kahadb_store_prepare(s, local.data, local.len, ops.data, ops.len),
              KAHADB_ERR_INVALID_ARGUMENT);
    CHECK(count_of(s, Q, "orders", NULL, NULL) == before, "prepared work is not visible");
    uint8_t *data = NULL;
    size_t len = 0;
    EXPECT_RC(kahadb_store_get_message(s, Q, "orders", "ID:prod-4:1:1:1", &data, &len),
              KAHADB_ERR_NOT_FOUND);
    check_prepared_list(s);

    /* A second one, rolled back. */
    packer tx2 = xa_tx(0x1234, "gtrid-2", "bq-1");
    packer ops2 = {.len = 0};
    put_i32(&ops2, 1);
    op_add(&ops2, Q, "orders", "ID:prod-4:1:1:2", 4, "rolled-back");
    EXPECT_RC(kahadb_store_prepare(s, tx2.data, tx2.len, ops2.data, ops2.len), KAHADB_OK);
    CHECK(buffer_count(kahadb_store_prepared, s) == 2, "two prepared");
    EXPECT_RC(kahadb_store_rollback_prepared(s, tx2.data, tx2.len, true), KAHADB_OK);
    EXPECT_RC(kahadb_store_rollback_prepared(s, tx2.data, tx2.len, true), KAHADB_ERR_NOT_FOUND);

    /* Close and reopen: the prepared transaction is recovered. */
    EXPECT_RC(kahadb_store_close(s), KAHADB_OK);
    s = NULL;
    EXPECT_RC(kahadb_store_open(dir, opts, &s), KAHADB_OK);
    if (!s) return NULL;
    check_prepared_list(s);
    CHECK(count_of(s, Q, "orders", NULL, NULL) == before, "count survives the reopen");

    kahadb_tx_outcome out[4];
    size_t count = 0;
    int64_t next = 0;
    EXPECT_RC(kahadb_store_next_sequence(s, Q, "orders", &next), KAHADB_OK);
    EXPECT_RC(kahadb_store_commit_prepared(s, tx.data, tx.len, true, out, 4, &count), KAHADB_OK);
    CHECK(count == 2, "2 outcomes, got %zu", count);
    CHECK(out[0].kind == KAHADB_OP_ADD && out[0].sequence == next, "XA add at %lld",
          (long long)out[0].sequence);
    CHECK(out[1].kind == KAHADB_OP_REMOVE && out[1].found && out[1].size == 9,
          "XA remove found (the updated body)");
    CHECK(count_of(s, Q, "orders", NULL, NULL) == before, "one in, one out");
    EXPECT_RC(kahadb_store_get_message(s, Q, "orders", "ID:prod-4:1:1:1", &data, &len), KAHADB_OK);
    CHECK(len == 7 && memcmp(data, "xa-body", 7) == 0, "XA message stored");
    kahadb_buffer_free(data, len);
    EXPECT_RC(kahadb_store_get_message(s, Q, "orders", "ID:prod-4:1:1:2", &data, &len),
              KAHADB_ERR_NOT_FOUND);
    CHECK(buffer_count(kahadb_store_prepared, s) == 0, "nothing prepared any more");
    EXPECT_RC(kahadb_store_commit_prepared(s, tx.data, tx.len, true, out, 4, &count),
              KAHADB_ERR_NOT_FOUND);
    EXPECT_RC(kahadb_store_rollback_prepared(s, tx.data, tx.len, true), KAHADB_ERR_NOT_FOUND);
    return s;
}

static void test_lists_and_maintenance(kahadb_store *s) {
    uint8_t *data = NULL;
    size_t len = 0;
    EXPECT_RC(kahadb_store_destinations(s, &data, &len), KAHADB_OK);
    reader r = {data, len, 0, 1};
    int32_t n = get_i32(&r);
    int saw_orders = 0, saw_prices = 0;
    for (int32_t i = 0; i < n && r.ok; i++) {
        int type = get_u8(&r);
        char name[64];
        get_str(&r, name, sizeof name);
        if (type == Q && strcmp(name, "orders") == 0) saw_orders = 1;
        if (type == T && strcmp(name, "prices") == 0) saw_prices = 1;
    }
    CHECK(r.ok && r.pos == len && saw_orders && saw_prices, "destinations listed (%d)", n);
    kahadb_buffer_free(data, len);

    bool found = false;
    EXPECT_RC(kahadb_store_remove_destination(s, Q, "prio", true, &found), KAHADB_OK);
    CHECK(found, "prio removed");
    EXPECT_RC(kahadb_store_remove_destination(s, Q, "prio", true, &found), KAHADB_OK);
    CHECK(!found, "prio already gone");
    CHECK(count_of(s, Q, "prio", NULL, NULL) == 0, "prio is empty");

    EXPECT_RC(kahadb_store_checkpoint(s), KAHADB_OK);
    uint64_t used = 0;
    EXPECT_RC(kahadb_store_disk_usage(s, &used), KAHADB_OK);
    CHECK(used >= 1024 * 1024, "disk usage %llu", (unsigned long long)used);
}

static void test_happy_path(const char *dir) {
    kahadb_store_options opts;
    kahadb_store_options_init(&opts);
    CHECK(opts.checkpoint_every == 100000 && !opts.delete_all, "store option defaults");
    CHECK(opts.journal.max_file_length == 32u * 1024 * 1024 &&
              opts.journal.sync_strategy == KAHADB_SYNC_ALWAYS,
          "journal option defaults");
    small_options(&opts);

    kahadb_store *s = NULL;
    EXPECT_RC(kahadb_store_open(dir, &opts, &s), KAHADB_OK);
    CHECK(s != NULL, "handle set");
    if (!s) return;
    test_queue(s);
    test_topic(s);
    test_local_tx(s);
    s = test_xa(s, dir, &opts);
    if (!s) return;
    test_lists_and_maintenance(s);
    uint64_t orders = count_of(s, Q, "orders", NULL, NULL);
    EXPECT_RC(kahadb_store_close(s), KAHADB_OK);

    /* Reopen: the same state. */
    EXPECT_RC(kahadb_store_open(dir, &opts, &s), KAHADB_OK);
    CHECK(count_of(s, Q, "orders", NULL, NULL) == orders, "orders survive a reopen");
    EXPECT_RC(kahadb_store_close(s), KAHADB_OK);

    /* delete_all empties the store. */
    opts.delete_all = true;
    EXPECT_RC(kahadb_store_open(dir, &opts, &s), KAHADB_OK);
    CHECK(buffer_count(kahadb_store_destinations, s) == 0, "no destinations after delete_all");
    CHECK(buffer_count(kahadb_store_prepared, s) == 0, "nothing prepared after delete_all");
    CHECK(count_of(s, Q, "orders", NULL, NULL) == 0, "orders empty after delete_all");
    int64_t next = -1;
    EXPECT_RC(kahadb_store_next_sequence(s, Q, "orders", &next), KAHADB_OK);
    CHECK(next == 0, "sequences start again at 0, got %lld", (long long)next);
    EXPECT_RC(kahadb_store_add(s, Q, "orders", "ID:prod-5:1:1:1", 4, false,
                               (const uint8_t *)"fresh", 5, true, NULL),
              KAHADB_OK);
    EXPECT_RC(kahadb_store_close(s), KAHADB_OK);
    opts.delete_all = false;
    EXPECT_RC(kahadb_store_open(dir, &opts, &s), KAHADB_OK);
    CHECK(count_of(s, Q, "orders", NULL, NULL) == 1, "only the message added after delete_all");
    EXPECT_RC(kahadb_store_close(s), KAHADB_OK);
}

/* ---- Misuse ---- */

static void test_bad_packed(kahadb_store *s) {
    packer tx = local_tx("ID:conn-9:1", 1);
    packer ops = {.len = 0};
    put_i32(&ops, 2);
    op_add(&ops, Q, "misuse", "ID:prod-8:1:1:1", 4, "abc");
    op_remove(&ops, T, "topic", "ID:prod-8:1:1:2", "client:sub", NULL);
    kahadb_tx_outcome out[4];
    size_t count = 0;
    uint64_t before = count_of(s, Q, "misuse", NULL, NULL);

    /* Every truncation of the operations and of the transaction id. */
    int refused = 0;
    for (size_t cut = 0; cut < ops.len; cut++)
        if (kahadb_store_commit(s, tx.data, tx.len, ops.data, cut, true, out, 4, &count) ==
            KAHADB_ERR_INVALID_ARGUMENT)
            refused++;
    CHECK(refused == (int)ops.len, "%d of %zu truncated ops buffers refused", refused, ops.len);
    refused = 0;
    for (size_t cut = 0; cut < tx.len; cut++)
        if (kahadb_store_commit(s, tx.data, cut, ops.data, ops.len, true, out, 4, &count) ==
            KAHADB_ERR_INVALID_ARGUMENT)
            refused++;
    CHECK(refused == (int)tx.len, "%d of %zu truncated tx buffers refused", refused, tx.len);
    EXPECT_RC(kahadb_store_prepare(s, tx.data, tx.len - 1, ops.data, ops.len),
              KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_commit_prepared(s, tx.data, 3, true, out, 4, &count),
              KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_rollback_prepared(s, tx.data, 3, true), KAHADB_ERR_INVALID_ARGUMENT);

    /* Left-over bytes. */
    packer longer = ops;
    put_u8(&longer, 0);
    EXPECT_RC(kahadb_store_commit(s, tx.data, tx.len, longer.data, longer.len, true, out, 4, &count),
              KAHADB_ERR_INVALID_ARGUMENT);
    packer tx_longer = tx;
    put_u8(&tx_longer, 0);
    EXPECT_RC(kahadb_store_commit(s, tx_longer.data, tx_longer.len, ops.data, ops.len, true, out, 4,
                                  &count),
              KAHADB_ERR_INVALID_ARGUMENT);

    /* Garbage. */
    uint8_t garbage[64];
    for (size_t i = 0; i < sizeof garbage; i++) garbage[i] = (uint8_t)(0xff - i * 7);
    EXPECT_RC(kahadb_store_commit(s, garbage, sizeof garbage, ops.data, ops.len, true, out, 4,
                                  &count),
              KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_commit(s, tx.data, tx.len, garbage, sizeof garbage, true, out, 4, &count),
              KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_prepare(s, garbage, sizeof garbage, garbage, sizeof garbage),
              KAHADB_ERR_INVALID_ARGUMENT);

    /* Out-of-range fields: tx kind, op kind, destination type, negative count and length. */
    packer bad = {.len = 0};
    put_u8(&bad, 7);
    put_str(&bad, "x");
    put_i64(&bad, 1);
    EXPECT_RC(kahadb_store_commit(s, bad.data, bad.len, ops.data, ops.len, true, out, 4, &count),
              KAHADB_ERR_INVALID_ARGUMENT);
    bad.len = 0;
    put_i32(&bad, 1);
    put_u8(&bad, 9);
    EXPECT_RC(kahadb_store_commit(s, tx.data, tx.len, bad.data, bad.len, true, out, 4, &count),
              KAHADB_ERR_INVALID_ARGUMENT);
    bad.len = 0;
    put_i32(&bad, 1);
    op_add(&bad, 9, "misuse", "ID:prod-8:1:1:3", 4, "abc");
    EXPECT_RC(kahadb_store_commit(s, tx.data, tx.len, bad.data, bad.len, true, out, 4, &count),
              KAHADB_ERR_INVALID_ARGUMENT);
    bad.len = 0;
    put_i32(&bad, -1);
    EXPECT_RC(kahadb_store_commit(s, tx.data, tx.len, bad.data, bad.len, true, out, 4, &count),
              KAHADB_ERR_INVALID_ARGUMENT);
    bad.len = 0;
    put_i32(&bad, 1);
    put_u8(&bad, KAHADB_OP_ADD);
    put_u8(&bad, Q);
    put_i32(&bad, -5);
    EXPECT_RC(kahadb_store_commit(s, tx.data, tx.len, bad.data, bad.len, true, out, 4, &count),
              KAHADB_ERR_INVALID_ARGUMENT);
    /* Invalid UTF-8 inside a packed string; an empty message id inside an op. */
    bad.len = 0;
    put_i32(&bad, 1);
    op_add(&bad, Q, "misuse\xff", "ID:prod-8:1:1:4", 4, "abc");
    EXPECT_RC(kahadb_store_commit(s, tx.data, tx.len, bad.data, bad.len, true, out, 4, &count),
              KAHADB_ERR_INVALID_ARGUMENT);
    bad.len = 0;
    put_i32(&bad, 1);
    op_add(&bad, Q, "misuse", "", 4, "abc");
    EXPECT_RC(kahadb_store_commit(s, tx.data, tx.len, bad.data, bad.len, true, out, 4, &count),
              KAHADB_ERR_INVALID_ARGUMENT);

    /* NULL buffers and outcome arrays. */
    EXPECT_RC(kahadb_store_commit(s, NULL, tx.len, ops.data, ops.len, true, out, 4, &count),
              KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_commit(s, tx.data, tx.len, NULL, 0, true, out, 4, &count),
              KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_commit(s, tx.data, tx.len, ops.data, ops.len, true, NULL, 4, &count),
              KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_prepare(s, NULL, 0, ops.data, ops.len), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_prepare(s, tx.data, tx.len, NULL, 0), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_commit_prepared(s, NULL, 0, true, out, 4, &count),
              KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_rollback_prepared(s, NULL, 0, true), KAHADB_ERR_NULL_ARGUMENT);

    CHECK(count_of(s, Q, "misuse", NULL, NULL) == before, "no refused transaction changed anything");
    CHECK(buffer_count(kahadb_store_prepared, s) == 0, "nothing prepared by refused calls");

    /* The valid buffers still work afterwards. */
    EXPECT_RC(kahadb_store_commit(s, tx.data, tx.len, ops.data, ops.len, true, out, 4, &count),
              KAHADB_OK);
    CHECK(count == 2 && out[0].sequence >= 0 && !out[1].found, "valid commit after the bad ones");
    CHECK(count_of(s, Q, "misuse", NULL, NULL) == before + 1, "the valid commit added one");
}

static void test_misuse(const char *dir, const char *journal_dir) {
    kahadb_store *s = NULL;
    uint8_t byte = 42;
    uint8_t *data = NULL;
    size_t len = 0;
    uint64_t u = 0, u2 = 0;
    int64_t i64 = 0;
    bool found = false;
    kahadb_removed r;
    kahadb_tx_outcome out[2];
    size_t count = 0;
    const char *bad_utf8 = "bad\xc3\x28name";

    /* Opening. */
    EXPECT_RC(kahadb_store_open(NULL, NULL, &s), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_open(dir, NULL, NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_open("", NULL, &s), KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_open(bad_utf8, NULL, &s), KAHADB_ERR_INVALID_ARGUMENT);
    CHECK(strlen(kahadb_last_error()) > 0, "last error is set");
    kahadb_store_options opts;
    small_options(&opts);
    opts.journal.max_file_length = 100;
    EXPECT_RC(kahadb_store_open(dir, &opts, &s), KAHADB_ERR_CONFIG);
    small_options(&opts);
    opts.journal.sync_strategy = 99;
    EXPECT_RC(kahadb_store_open(dir, &opts, &s), KAHADB_ERR_CONFIG);
    CHECK(s == NULL, "output untouched on failure");
    kahadb_store_options_init(NULL); /* ignored */
    kahadb_read_request_init(NULL);  /* ignored */
    kahadb_buffer_free(NULL, 0);     /* ignored */

    EXPECT_RC(kahadb_store_open(dir, NULL, &s), KAHADB_OK); /* NULL options: the defaults */
    if (!s) return;
    kahadb_store *s2 = NULL;
    EXPECT_RC(kahadb_store_open(dir, NULL, &s2), KAHADB_ERR_LOCKED);
    CHECK(s2 == NULL, "output untouched when locked");
    EXPECT_RC(kahadb_store_add(s, Q, "misuse", "ID:prod-7:1:1:1", 4, false, &byte, 1, true, NULL),
              KAHADB_OK);

    /* NULL handle, for every function. */
    EXPECT_RC(kahadb_store_close(NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_checkpoint(NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_add(NULL, Q, "q", "m", 4, false, &byte, 1, true, &i64),
              KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_update(NULL, Q, "q", "m", 4, false, &byte, 1, true, &i64),
              KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_remove(NULL, Q, "q", "m", true, &r), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_ack(NULL, T, "t", "s", "m", true, &r), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_subscribe(NULL, T, "t", "s", NULL, 0, false, true),
              KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_unsubscribe(NULL, T, "t", "s", true, &found), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_remove_destination(NULL, Q, "q", true, &found), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_commit(NULL, &byte, 1, &byte, 1, true, out, 2, &count),
              KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_prepare(NULL, &byte, 1, &byte, 1), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_commit_prepared(NULL, &byte, 1, true, out, 2, &count),
              KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_rollback_prepared(NULL, &byte, 1, true), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_prepared(NULL, &data, &len), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_destinations(NULL, &data, &len), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_subscriptions(NULL, T, "t", &data, &len), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_counts(NULL, Q, "q", NULL, &u, &u2), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_next_sequence(NULL, Q, "q", &i64), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_get_message(NULL, Q, "q", "m", &data, &len), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_read(NULL, Q, "q", NULL, NULL, &data, &len), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_last_producer_sequence(NULL, "p", &i64), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_disk_usage(NULL, &u), KAHADB_ERR_NULL_ARGUMENT);

    /* NULL strings and required outputs. */
    EXPECT_RC(kahadb_store_add(s, Q, NULL, "m", 4, false, &byte, 1, true, &i64),
              KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_add(s, Q, "q", NULL, 4, false, &byte, 1, true, &i64),
              KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_remove(s, Q, "q", NULL, true, &r), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_ack(s, T, "t", NULL, "m", true, &r), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_subscribe(s, T, "t", NULL, NULL, 0, false, true),
              KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_unsubscribe(s, T, "t", NULL, true, &found), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_remove_destination(s, Q, NULL, true, &found), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_prepared(s, NULL, &len), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_destinations(s, &data, NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_subscriptions(s, T, "t", NULL, &len), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_counts(s, Q, "q", NULL, NULL, &u2), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_counts(s, Q, "q", NULL, &u, NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_next_sequence(s, Q, "q", NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_get_message(s, Q, "misuse", "ID:prod-7:1:1:1", NULL, &len),
              KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_read(s, Q, "misuse", NULL, NULL, &data, NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_last_producer_sequence(s, NULL, &i64), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_last_producer_sequence(s, "p", NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_store_disk_usage(s, NULL), KAHADB_ERR_NULL_ARGUMENT);

    /* Made-up handles and handles of another type. */
    kahadb_store *bogus = (kahadb_store *)&byte;
    EXPECT_RC(kahadb_store_add(bogus, Q, "q", "m", 4, false, &byte, 1, true, &i64),
              KAHADB_ERR_INVALID_HANDLE);
    EXPECT_RC(kahadb_store_counts(bogus, Q, "q", NULL, &u, &u2), KAHADB_ERR_INVALID_HANDLE);
    EXPECT_RC(kahadb_store_close(bogus), KAHADB_ERR_INVALID_HANDLE);
    kahadb_journal *j = NULL;
    EXPECT_RC(kahadb_journal_open(journal_dir, NULL, &j), KAHADB_OK);
    EXPECT_RC(kahadb_store_checkpoint((kahadb_store *)j), KAHADB_ERR_INVALID_HANDLE);
    EXPECT_RC(kahadb_store_close((kahadb_store *)j), KAHADB_ERR_INVALID_HANDLE);
    EXPECT_RC(kahadb_journal_sync((kahadb_journal *)s), KAHADB_ERR_INVALID_HANDLE);
    EXPECT_RC(kahadb_journal_close(j), KAHADB_OK);

    /* Invalid destination types, empty names, ids and keys. */
    EXPECT_RC(kahadb_store_add(s, 4, "q", "m", 4, false, &byte, 1, true, &i64),
              KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_add(s, -1, "q", "m", 4, false, &byte, 1, true, &i64),
              KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_counts(s, 17, "q", NULL, &u, &u2), KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_read(s, 4, "q", NULL, NULL, &data, &len), KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_remove_destination(s, 5, "q", true, &found), KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_add(s, Q, "q", "", 4, false, &byte, 1, true, &i64),
              KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_add(s, Q, "", "m", 4, false, &byte, 1, true, &i64),
              KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_remove(s, Q, "q", "", true, &r), KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_ack(s, T, "t", "", "m", true, &r), KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_subscribe(s, T, "t", "", NULL, 0, false, true),
              KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_counts(s, T, "t", "", &u, &u2), KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_get_message(s, Q, "misuse", "", &data, &len), KAHADB_ERR_INVALID_ARGUMENT);

    /* Buffers: NULL with a length; NULL with none is an empty body. */
    EXPECT_RC(kahadb_store_add(s, Q, "misuse", "ID:prod-7:1:1:2", 4, false, NULL, 5, true, &i64),
              KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_subscribe(s, T, "t", "c:s", NULL, 3, false, true),
              KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_add(s, Q, "misuse", "ID:prod-7:1:1:3", 4, false, NULL, 0, true, &i64),
              KAHADB_OK);
    data = NULL;
    len = 99;
    EXPECT_RC(kahadb_store_get_message(s, Q, "misuse", "ID:prod-7:1:1:3", &data, &len), KAHADB_OK);
    CHECK(data != NULL && len == 0, "an empty body comes back empty");
    kahadb_buffer_free(data, len);

    /* Invalid UTF-8 in every kind of string argument. */
    EXPECT_RC(kahadb_store_add(s, Q, bad_utf8, "m", 4, false, &byte, 1, true, &i64),
              KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_add(s, Q, "misuse", bad_utf8, 4, false, &byte, 1, true, &i64),
              KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_ack(s, T, "t", bad_utf8, "m", true, &r), KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_read(s, T, "t", bad_utf8, NULL, &data, &len), KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_store_last_producer_sequence(s, bad_utf8, &i64), KAHADB_ERR_INVALID_ARGUMENT);

    /* A read request out of range. */
    kahadb_read_request req;
    kahadb_read_request_init(&req);
    req.from_low = -3;
    EXPECT_RC(kahadb_store_read(s, Q, "misuse", NULL, &req, &data, &len),
              KAHADB_ERR_INVALID_ARGUMENT);

    /* Optional outputs may be NULL. */
    EXPECT_RC(kahadb_store_remove(s, Q, "misuse", "ID:nope:1:1:1", true, NULL), KAHADB_OK);
    EXPECT_RC(kahadb_store_unsubscribe(s, T, "t", "c:s", true, NULL), KAHADB_OK);
    EXPECT_RC(kahadb_store_remove_destination(s, Q, "never", true, NULL), KAHADB_OK);

    test_bad_packed(s);

    /* After all that, the store still works and holds exactly the valid changes. */
    int64_t seq = -1;
    EXPECT_RC(kahadb_store_add(s, Q, "misuse", "ID:prod-7:1:1:4", 4, false, &byte, 1, true, &seq),
              KAHADB_OK);
    CHECK(seq == 3, "store usable after misuse: sequence %lld", (long long)seq);
    CHECK(count_of(s, Q, "misuse", NULL, NULL) == 4, "exactly the valid adds are stored");

    /* Closed handles: an error, never a crash. */
    EXPECT_RC(kahadb_store_close(s), KAHADB_OK);
    EXPECT_RC(kahadb_store_close(s), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_store_add(s, Q, "misuse", "ID:prod-7:1:1:5", 4, false, &byte, 1, true, &seq),
              KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_store_counts(s, Q, "misuse", NULL, &u, &u2), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_store_read(s, Q, "misuse", NULL, NULL, &data, &len), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_store_prepared(s, &data, &len), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_store_checkpoint(s), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_store_disk_usage(s, &u), KAHADB_ERR_CLOSED);

    /* The directory is free again and nothing was lost. */
    EXPECT_RC(kahadb_store_open(dir, NULL, &s), KAHADB_OK);
    CHECK(count_of(s, Q, "misuse", NULL, NULL) == 4, "misuse queue survives the reopen");
    EXPECT_RC(kahadb_store_close(s), KAHADB_OK);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    char happy[4096], misuse[4096], journal[4096];
    snprintf(happy, sizeof happy, "%s/store-happy", argv[1]);
    snprintf(misuse, sizeof misuse, "%s/store-misuse", argv[1]);
    snprintf(journal, sizeof journal, "%s/store-misuse-journal", argv[1]);
    test_happy_path(happy);
    test_misuse(misuse, journal);
    printf("C store tests against kahadb %s\n", kahadb_version());
    printf("c-store: %d passed, %d failed\n", checks - failures, failures);
    return failures == 0 ? 0 : 1;
}
