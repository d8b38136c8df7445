/* What the C tests share: counting checks (each CHECK counts; a failing one prints where and
 * why, with the library's last error, and counts as a failure; main() reports both counts),
 * and a sleep and a monotonic clock in milliseconds. */
#ifndef KAHADB_TEST_SUPPORT_H
#define KAHADB_TEST_SUPPORT_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "kahadb.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        checks++;                                                            \
        if (!(cond)) {                                                       \
            failures++;                                                      \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                    \
            fprintf(stderr, " (last error: %s)\n", kahadb_last_error());    \
        }                                                                    \
    } while (0)

/* A call whose result code must be `want`. */
#define EXPECT_RC(call, want)                                                       \
    do {                                                                            \
        int32_t rc_ = (call);                                                       \
        CHECK(rc_ == (want), "%s returned %d (%s), want %d (%s)", #call, rc_,       \
              kahadb_result_name(rc_), (int)(want), kahadb_result_name(want));      \
    } while (0)

static inline void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static inline long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

#endif
