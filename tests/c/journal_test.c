/*
 * The C ABI from a C program: the happy path and every documented misuse.
 * Built by `make test` with gcc -Wall -Wextra -Werror against include/kahadb.h.
 * Usage: journal_test <scratch directory>
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test_support.h"
#include "kahadb.h"

static void fill(uint8_t *buf, size_t len, uint32_t seed) {
    for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)(seed * 31u + i);
}

struct writer_arg {
    kahadb_journal *journal;
    uint32_t id;
    int count;
    kahadb_location *locations;
    int errors;
};

static void *writer(void *p) {
    struct writer_arg *a = p;
    uint8_t buf[256];
    for (int i = 0; i < a->count; i++) {
        fill(buf, sizeof buf, a->id * 100000u + (uint32_t)i);
        if (kahadb_journal_append(a->journal, buf, sizeof buf, i % 2 == 0, &a->locations[i]) != KAHADB_OK)
            a->errors++;
    }
    return NULL;
}

static void test_happy_path(const char *dir) {
    kahadb_journal_options opts;
    kahadb_journal_options_init(&opts);
    CHECK(opts.max_file_length == 32u * 1024 * 1024, "default max_file_length %u", opts.max_file_length);
    CHECK(opts.sync_strategy == KAHADB_SYNC_ALWAYS, "default sync strategy");
    opts.max_file_length = 64 * 1024;
    opts.max_batch_size = 16 * 1024;

    kahadb_journal *j = NULL;
    EXPECT_RC(kahadb_journal_open(dir, &opts, &j), KAHADB_OK);
    CHECK(j != NULL, "handle set");

    enum { N = 200 };
    kahadb_location locs[N];
    uint8_t buf[3000];
    for (int i = 0; i < N; i++) {
        size_t len = 1 + (size_t)(i * 37) % sizeof buf;
        fill(buf, len, (uint32_t)i);
        EXPECT_RC(kahadb_journal_append(j, buf, len, i % 4 == 0, &locs[i]), KAHADB_OK);
        CHECK(locs[i].size == len + 5, "size %u for len %zu", locs[i].size, len);
    }
    EXPECT_RC(kahadb_journal_sync(j), KAHADB_OK);
    CHECK(locs[N - 1].file_id > 1, "rotated to file %u", locs[N - 1].file_id);

    for (int i = 0; i < N; i++) {
        uint8_t *data = NULL;
        size_t len = 0;
        EXPECT_RC(kahadb_journal_read(j, locs[i], &data, &len), KAHADB_OK);
        size_t want = 1 + (size_t)(i * 37) % sizeof buf;
        fill(buf, want, (uint32_t)i);
        CHECK(len == want && data && memcmp(data, buf, len) == 0, "record %d read back", i);
        kahadb_buffer_free(data, len);
    }

    /* A cursor over everything, then one after a location. */
    kahadb_cursor *c = NULL;
    EXPECT_RC(kahadb_cursor_open(j, NULL, &c), KAHADB_OK);
    int seen = 0;
    kahadb_location loc;
    uint8_t *data;
    size_t len;
    int32_t rc;
    while ((rc = kahadb_cursor_next(c, &loc, &data, &len)) == KAHADB_OK) {
        CHECK(seen < N && memcmp(&loc, &locs[seen], sizeof loc) == 0, "cursor record %d in order", seen);
        kahadb_buffer_free(data, len);
        seen++;
    }
    CHECK(rc == KAHADB_END, "cursor ends with KAHADB_END, got %d", rc);
    CHECK(seen == N, "cursor saw %d of %d", seen, N);
    EXPECT_RC(kahadb_cursor_close(c), KAHADB_OK);
    EXPECT_RC(kahadb_cursor_close(c), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_cursor_next(c, &loc, &data, &len), KAHADB_ERR_CLOSED);

    EXPECT_RC(kahadb_cursor_open(j, &locs[N - 3], &c), KAHADB_OK);
    seen = 0;
    while (kahadb_cursor_next(c, &loc, &data, &len) == KAHADB_OK) {
        kahadb_buffer_free(data, len);
        seen++;
    }
    CHECK(seen == 2, "cursor after a location saw %d, want 2", seen);
    EXPECT_RC(kahadb_cursor_close(c), KAHADB_OK);

    /* Concurrency: 8 threads append at once. */
    enum { T = 8, PER = 500 };
    pthread_t threads[T];
    struct writer_arg args[T];
    for (int t = 0; t < T; t++) {
        args[t] = (struct writer_arg){j, (uint32_t)t, PER, calloc(PER, sizeof(kahadb_location)), 0};
        pthread_create(&threads[t], NULL, writer, &args[t]);
    }
    for (int t = 0; t < T; t++) pthread_join(threads[t], NULL);
    for (int t = 0; t < T; t++) {
        CHECK(args[t].errors == 0, "writer %d had %d errors", t, args[t].errors);
        for (int i = 0; i < PER; i++) {
            uint8_t want[256];
            fill(want, sizeof want, (uint32_t)t * 100000u + (uint32_t)i);
            if (kahadb_journal_read(j, args[t].locations[i], &data, &len) == KAHADB_OK) {
                CHECK(len == sizeof want && memcmp(data, want, len) == 0, "thread %d record %d", t, i);
                kahadb_buffer_free(data, len);
            } else {
                CHECK(0, "thread %d record %d unreadable", t, i);
            }
        }
        free(args[t].locations);
    }

    /* Removing old data files; the active one is refused. */
    uint32_t old = 1, active = 0, missing = 1000;
    EXPECT_RC(kahadb_journal_append(j, buf, 10, true, &loc), KAHADB_OK);
    active = loc.file_id;
    EXPECT_RC(kahadb_journal_remove_data_files(j, &old, 1), KAHADB_OK);
    EXPECT_RC(kahadb_journal_read(j, locs[0], &data, &len), KAHADB_ERR_NOT_FOUND);
    EXPECT_RC(kahadb_journal_remove_data_files(j, &active, 1), KAHADB_ERR_ILLEGAL_STATE);
    EXPECT_RC(kahadb_journal_remove_data_files(j, &missing, 1), KAHADB_ERR_NOT_FOUND);
    EXPECT_RC(kahadb_journal_remove_data_files(j, NULL, 1), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_journal_remove_data_files(j, NULL, 0), KAHADB_OK);

    EXPECT_RC(kahadb_journal_close(j), KAHADB_OK);

    /* Reopen: everything (but the removed file) is still there. */
    EXPECT_RC(kahadb_journal_open(dir, &opts, &j), KAHADB_OK);
    EXPECT_RC(kahadb_journal_read(j, locs[N - 1], &data, &len), KAHADB_OK);
    kahadb_buffer_free(data, len);
    EXPECT_RC(kahadb_journal_close(j), KAHADB_OK);
}

static void test_misuse(const char *dir) {
    kahadb_journal *j = NULL;
    kahadb_location loc = {0, 0, 0};
    uint8_t *data = NULL;
    size_t len = 0;
    uint8_t byte = 42;

    /* NULL handles and arguments. */
    EXPECT_RC(kahadb_journal_open(NULL, NULL, &j), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_journal_open(dir, NULL, NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_journal_open("", NULL, &j), KAHADB_ERR_INVALID_ARGUMENT);
    CHECK(strlen(kahadb_last_error()) > 0, "last error is set");
    EXPECT_RC(kahadb_journal_append(NULL, &byte, 1, true, &loc), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_journal_read(NULL, loc, &data, &len), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_journal_sync(NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_journal_close(NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_cursor_open(NULL, NULL, NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_cursor_next(NULL, &loc, &data, &len), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_cursor_close(NULL), KAHADB_ERR_NULL_ARGUMENT);
    kahadb_journal_options_init(NULL); /* ignored */
    kahadb_buffer_free(NULL, 0);       /* ignored */

    /* A pointer the library never issued. */
    kahadb_journal *bogus = (kahadb_journal *)&byte;
    EXPECT_RC(kahadb_journal_append(bogus, &byte, 1, true, &loc), KAHADB_ERR_INVALID_HANDLE);
    EXPECT_RC(kahadb_journal_close(bogus), KAHADB_ERR_INVALID_HANDLE);

    /* Bad options. */
    kahadb_journal_options opts;
    kahadb_journal_options_init(&opts);
    opts.max_file_length = 100;
    EXPECT_RC(kahadb_journal_open(dir, &opts, &j), KAHADB_ERR_CONFIG);
    kahadb_journal_options_init(&opts);
    opts.sync_strategy = 99;
    EXPECT_RC(kahadb_journal_open(dir, &opts, &j), KAHADB_ERR_CONFIG);
    kahadb_journal_options_init(&opts);
    opts.preallocation = -1;
    EXPECT_RC(kahadb_journal_open(dir, &opts, &j), KAHADB_ERR_CONFIG);

    kahadb_journal_options_init(&opts);
    opts.max_file_length = 64 * 1024;
    opts.max_batch_size = 64 * 1024;
    EXPECT_RC(kahadb_journal_open(dir, &opts, &j), KAHADB_OK);

    /* A second open of the same directory. */
    kahadb_journal *j2 = NULL;
    EXPECT_RC(kahadb_journal_open(dir, &opts, &j2), KAHADB_ERR_LOCKED);
    CHECK(j2 == NULL, "output untouched on failure");

    /* Bad records and locations. */
    EXPECT_RC(kahadb_journal_append(j, NULL, 10, true, &loc), KAHADB_ERR_INVALID_ARGUMENT);
    EXPECT_RC(kahadb_journal_append(j, &byte, 0, true, &loc), KAHADB_ERR_EMPTY_RECORD);
    EXPECT_RC(kahadb_journal_append(j, NULL, 0, true, &loc), KAHADB_ERR_EMPTY_RECORD);
    size_t big = 64 * 1024;
    uint8_t *huge = calloc(1, big);
    EXPECT_RC(kahadb_journal_append(j, huge, big, true, &loc), KAHADB_ERR_RECORD_TOO_LARGE);
    free(huge);
    EXPECT_RC(kahadb_journal_append(j, &byte, 1, true, NULL), KAHADB_OK); /* location optional */
    EXPECT_RC(kahadb_journal_append(j, &byte, 1, false, &loc), KAHADB_OK);
    kahadb_location bad = loc;
    bad.offset += 1;
    EXPECT_RC(kahadb_journal_read(j, bad, &data, &len), KAHADB_ERR_INVALID_LOCATION);
    bad = loc;
    bad.size = 2;
    EXPECT_RC(kahadb_journal_read(j, bad, &data, &len), KAHADB_ERR_INVALID_LOCATION);
    bad = loc;
    bad.file_id = 77;
    EXPECT_RC(kahadb_journal_read(j, bad, &data, &len), KAHADB_ERR_INVALID_LOCATION);
    EXPECT_RC(kahadb_journal_read(j, loc, NULL, &len), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_journal_read(j, loc, &data, NULL), KAHADB_ERR_NULL_ARGUMENT);

    kahadb_cursor *c = NULL;
    EXPECT_RC(kahadb_cursor_open(j, NULL, NULL), KAHADB_ERR_NULL_ARGUMENT);
    EXPECT_RC(kahadb_cursor_open(j, NULL, &c), KAHADB_OK);
    EXPECT_RC(kahadb_cursor_next(c, NULL, &data, &len), KAHADB_ERR_NULL_ARGUMENT);
    /* A cursor handle is not a journal handle, and the reverse. */
    EXPECT_RC(kahadb_journal_sync((kahadb_journal *)c), KAHADB_ERR_INVALID_HANDLE);
    EXPECT_RC(kahadb_cursor_close((kahadb_cursor *)j), KAHADB_ERR_INVALID_HANDLE);

    /* Closed handles: an error, never a crash. */
    EXPECT_RC(kahadb_journal_close(j), KAHADB_OK);
    EXPECT_RC(kahadb_journal_close(j), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_journal_append(j, &byte, 1, true, &loc), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_journal_read(j, loc, &data, &len), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_journal_sync(j), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_cursor_open(j, NULL, &c), KAHADB_ERR_CLOSED);
    /* The cursor outlives its journal but reports it closed. */
    EXPECT_RC(kahadb_cursor_next(c, &loc, &data, &len), KAHADB_ERR_CLOSED);
    EXPECT_RC(kahadb_cursor_close(c), KAHADB_OK);

    CHECK(strcmp(kahadb_result_name(KAHADB_ERR_NO_SPACE), "NO_SPACE") == 0, "result name");
    CHECK(strcmp(kahadb_result_name(12345), "UNKNOWN") == 0, "unknown result name");
    CHECK(strlen(kahadb_version()) > 0, "version");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
        return 2;
    }
    char happy[4096], misuse[4096];
    snprintf(happy, sizeof happy, "%s/happy", argv[1]);
    snprintf(misuse, sizeof misuse, "%s/misuse", argv[1]);
    test_happy_path(happy);
    test_misuse(misuse);
    printf("C journal tests against kahadb %s\n", kahadb_version());
    printf("c-journal: %d passed, %d failed\n", checks - failures, failures);
    return failures == 0 ? 0 : 1;
}
