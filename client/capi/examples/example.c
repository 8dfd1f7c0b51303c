/* The FaaSCache C client: put, get (caller's buffer and library buffer), compare-and-swap,
 * increment, multi-write, multi-read, remove, and errors. Every step is checked.
 *
 * Build (from the repository root, after `cargo build -p faascache-capi`):
 *   cc -std=c11 -Wall -Wextra -Werror -I client/capi/include client/capi/examples/example.c \
 *      -L target/debug -Wl,-rpath,$PWD/target/debug -lfaascache_capi -o example
 * Run against a cluster:   ./example tcp:host=127.0.0.1,port=12246
 *                     or:  ./example --dir /tmp/faascache-cluster
 * (tests/example.rs does both against an in-process cluster.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faascache.h"

static int failures = 0;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__,       \
                    __LINE__, #cond, faascache_last_error());                             \
            failures++;                                                                  \
            goto out;                                                                    \
        }                                                                                \
    } while (0)

#define CHECK_STATUS(call, want)                                                         \
    do {                                                                                 \
        faascache_status s_ = (call);                                                    \
        if (s_ != (want)) {                                                              \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s (last error: %s)\n",      \
                    __FILE__, __LINE__, #call, faascache_status_name(s_),                 \
                    faascache_status_name(want), faascache_last_error());                 \
            failures++;                                                                  \
            goto out;                                                                    \
        }                                                                                \
    } while (0)

#define KEY(s) (const uint8_t *)(s), strlen(s)

int main(int argc, char **argv) {
    faascache_client *c = NULL;
    uint8_t *owned = NULL;
    size_t owned_len = 0;
    faascache_read_item reads[4];
    memset(reads, 0, sizeof reads);

    if (argc == 2) {
        CHECK_STATUS(faascache_connect(argv[1], 10000, &c), FAASCACHE_STATUS_OK);
    } else if (argc == 3 && strcmp(argv[1], "--dir") == 0) {
        CHECK_STATUS(faascache_connect_dir(argv[2], 10000, &c), FAASCACHE_STATUS_OK);
    } else {
        fprintf(stderr, "usage: %s LOCATOR | --dir DIR\n", argv[0]);
        return 2;
    }

    uint64_t t = 0, t2 = 0;
    CHECK_STATUS(faascache_create_table(c, "capi_example", 1, &t), FAASCACHE_STATUS_OK);
    CHECK_STATUS(faascache_get_table_id(c, "capi_example", &t2), FAASCACHE_STATUS_OK);
    CHECK(t == t2 && t != 0);
    CHECK_STATUS(faascache_get_table_id(c, "no_such_table", &t2), FAASCACHE_STATUS_NO_SUCH_TABLE);
    CHECK(strstr(faascache_last_error(), "no_such_table") != NULL);

    /* put, then get into a buffer that is too small, then into one that fits */
    uint64_t v1 = 0, v = 0;
    CHECK_STATUS(faascache_write(c, t, KEY("alice"), (const uint8_t *)"hello", 5, NULL, &v1),
                 FAASCACHE_STATUS_OK);
    CHECK(v1 > 0);
    uint8_t buf[16];
    size_t len = 2;
    CHECK_STATUS(faascache_read(c, t, KEY("alice"), buf, &len, &v), FAASCACHE_STATUS_BUFFER_TOO_SMALL);
    CHECK(len == 5);
    len = sizeof buf;
    CHECK_STATUS(faascache_read(c, t, KEY("alice"), buf, &len, &v), FAASCACHE_STATUS_OK);
    CHECK(len == 5 && memcmp(buf, "hello", 5) == 0 && v == v1);
    CHECK_STATUS(faascache_read_alloc(c, t, KEY("alice"), &owned, &owned_len, &v), FAASCACHE_STATUS_OK);
    CHECK(owned_len == 5 && memcmp(owned, "hello", 5) == 0);
    faascache_buf_free(owned, owned_len);
    owned = NULL;

    /* compare-and-swap: a stale version is refused and the current one reported */
    uint64_t v2 = 0;
    CHECK_STATUS(faascache_write(c, t, KEY("alice"), (const uint8_t *)"world", 5, NULL, &v2), FAASCACHE_STATUS_OK);
    CHECK(v2 > v1);
    CHECK_STATUS(faascache_write_if_version(c, t, KEY("alice"), (const uint8_t *)"stale", 5, v1, &v),
                 FAASCACHE_STATUS_VERSION_MISMATCH);
    CHECK(v == v2);
    CHECK_STATUS(faascache_write_if_version(c, t, KEY("alice"), (const uint8_t *)"fresh", 5, v2, &v),
                 FAASCACHE_STATUS_OK);
    CHECK(v > v2);
    faascache_reject create_only = {.exists = true};
    CHECK_STATUS(faascache_write(c, t, KEY("alice"), (const uint8_t *)"x", 1, &create_only, NULL),
                 FAASCACHE_STATUS_OBJECT_EXISTS);

    /* increment */
    int64_t n = 0;
    CHECK_STATUS(faascache_incr(c, t, KEY("counter"), 5, &n, NULL), FAASCACHE_STATUS_OK);
    CHECK(n == 5);
    CHECK_STATUS(faascache_incr(c, t, KEY("counter"), -7, &n, NULL), FAASCACHE_STATUS_OK);
    CHECK(n == -2);
    CHECK_STATUS(faascache_incr(c, t, KEY("alice"), 1, &n, NULL), FAASCACHE_STATUS_NOT_A_NUMBER);

    /* multi-write three objects, multi-read them and a missing one */
    const char *keys[3] = {"k1", "k2", "k3"};
    const char *vals[3] = {"one", "two", "three"};
    faascache_write_item writes[3];
    memset(writes, 0, sizeof writes);
    for (int i = 0; i < 3; i++) {
        writes[i].table = t;
        writes[i].key = (const uint8_t *)keys[i];
        writes[i].key_len = strlen(keys[i]);
        writes[i].value = (const uint8_t *)vals[i];
        writes[i].value_len = strlen(vals[i]);
    }
    CHECK_STATUS(faascache_multi_write(c, writes, 3), FAASCACHE_STATUS_OK);
    for (int i = 0; i < 3; i++) CHECK(writes[i].status == FAASCACHE_STATUS_OK && writes[i].version > 0);
    const char *rkeys[4] = {"k1", "k2", "k3", "missing"};
    for (int i = 0; i < 4; i++) {
        reads[i].table = t;
        reads[i].key = (const uint8_t *)rkeys[i];
        reads[i].key_len = strlen(rkeys[i]);
    }
    CHECK_STATUS(faascache_multi_read(c, reads, 4), FAASCACHE_STATUS_OK);
    for (int i = 0; i < 3; i++) {
        CHECK(reads[i].status == FAASCACHE_STATUS_OK);
        CHECK(reads[i].value_len == strlen(vals[i]) && memcmp(reads[i].value, vals[i], reads[i].value_len) == 0);
        CHECK(reads[i].version == writes[i].version);
    }
    CHECK(reads[3].status == FAASCACHE_STATUS_NOT_FOUND && reads[3].value == NULL);

    /* remove: the removed version, then NOT_FOUND; removing again is not an error */
    CHECK_STATUS(faascache_remove(c, t, KEY("k1"), NULL, &v), FAASCACHE_STATUS_OK);
    CHECK(v == writes[0].version);
    len = sizeof buf;
    CHECK_STATUS(faascache_read(c, t, KEY("k1"), buf, &len, NULL), FAASCACHE_STATUS_NOT_FOUND);
    CHECK_STATUS(faascache_remove(c, t, KEY("k1"), NULL, &v), FAASCACHE_STATUS_OK);
    CHECK(v == 0);

    /* bad arguments are errors, not crashes */
    CHECK_STATUS(faascache_read(c, t, NULL, 3, buf, &len, NULL), FAASCACHE_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(faascache_last_error(), "key is NULL") != NULL);
    CHECK_STATUS(faascache_write(c, t, KEY(""), (const uint8_t *)"x", 1, NULL, NULL), FAASCACHE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(faascache_write(NULL, t, KEY("a"), (const uint8_t *)"x", 1, NULL, NULL), FAASCACHE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(faascache_multi_read(c, NULL, 2), FAASCACHE_STATUS_INVALID_ARGUMENT);
    CHECK(strcmp(faascache_status_name(12345), "FAASCACHE_STATUS_UNKNOWN") == 0);

    CHECK_STATUS(faascache_drop_table(c, "capi_example"), FAASCACHE_STATUS_OK);
    CHECK_STATUS(faascache_get_table_id(c, "capi_example", &t2), FAASCACHE_STATUS_NO_SUCH_TABLE);

out:
    for (int i = 0; i < 4; i++) faascache_buf_free(reads[i].value, reads[i].value_len);
    faascache_buf_free(owned, owned_len);
    faascache_free(c);
    if (failures == 0) printf("example: ok\n");
    return failures == 0 ? 0 : 1;
}
