/* test_safetensors: the safetensors reader and writer (anx/safetensors.h).
 *
 * - round trip: F32, F64 (read back as F32, rounded to nearest even), I64, a 0-d tensor, an
 *   empty tensor and metadata; the raw bytes of the file (header length, key order, space
 *   padding, 8-byte aligned data, no holes);
 * - a file written by Python's json/struct (tests/io/make_fixture.py), so our reader does not
 *   only understand our own writer;
 * - every malformed header the reader must refuse, each with a one-line message naming the
 *   file and, where there is one, the tensor;
 * - a write that fails half-way (RLIMIT_FSIZE makes write() fail with EFBIG, as a full disk
 *   would): status 2, the old file at the path untouched, no temporary file left behind.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "anx/safetensors.h"
#include "testutil.h"

static char dir[64];

static void path_in(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", dir, name); }

static uint32_t f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

/* Files in dir, "." and ".." excluded; names joined into list (for messages). */
static int count_files(char *list, size_t cap)
{
    DIR *d = opendir(dir);
    int n = 0;
    size_t k = 0;
    list[0] = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        n++;
        if (k < cap) k += (size_t)snprintf(list + k, cap - k, "%s ", e->d_name);
    }
    if (d) closedir(d);
    return n;
}

static void remove_all(void)
{
    DIR *d = opendir(dir);
    char p[512];
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        path_in(p, sizeof p, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
}

/* A raw file: 8-byte length, header text (unpadded), then data bytes. hlen_override >= 0
 * replaces the length field. */
static void write_raw(const char *path, const char *header, const void *data, size_t nd,
                      int64_t hlen_override)
{
    FILE *f = fopen(path, "wb");
    uint64_t n = hlen_override >= 0 ? (uint64_t)hlen_override : strlen(header);
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(n >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (nd) fwrite(data, 1, nd, f);
    fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    b[*n] = 0;
    fclose(f);
    return b;
}

static void test_round_trip(void)
{
    char path[256];
    path_in(path, sizeof path, "rt.safetensors");
    /* [2,3] F32 */
    const float a[6] = {1.0f, -2.5f, 3.25f, 0.0f, -0.0f, 1e-45f};
    /* F64 values whose float32 rounding is known from IEEE 754 by hand:
     * 0.1 -> 0x3DCCCCCD, 1/3 -> 0x3EAAAAAB, 1 + 2^-24 (a tie) -> 1.0 (even),
     * 1 + 3*2^-24 (a tie) -> 1 + 2^-22 = 0x3F800002 (even), -1e300 -> -inf (overflow) */
    const double b[5] = {0.1, 1.0 / 3.0, 1.0 + ldexp(1.0, -24), 1.0 + 3 * ldexp(1.0, -24), -1e300};
    const uint32_t b_want[5] = {0x3DCCCCCDu, 0x3EAAAAABu, 0x3F800000u, 0x3F800002u, 0xFF800000u};
    const int64_t c[3] = {-1, 7, INT64_MAX};
    const float scalar = 42.5f;
    const int64_t sa[2] = {2, 3}, sb[1] = {5}, sc[1] = {3}, se[2] = {0, 5};

    anx_st_writer *w = anx_st_writer_new();
    TU_CHECK(w != NULL);
    TU_CHECK(anx_st_writer_add(w, "a", ANX_DTYPE_F32, sa, 2, a) == 0);
    TU_CHECK(anx_st_writer_add(w, "b.f64", ANX_DTYPE_F64, sb, 1, b) == 0);
    TU_CHECK(anx_st_writer_add(w, "c", ANX_DTYPE_I64, sc, 1, c) == 0);
    TU_CHECK(anx_st_writer_add(w, "loss", ANX_DTYPE_F32, NULL, 0, &scalar) == 0);
    TU_CHECK(anx_st_writer_add(w, "empty", ANX_DTYPE_F32, se, 2, NULL) == 0);
    TU_CHECK(anx_st_writer_meta(w, "backend", "cpu") == 0);
    TU_CHECK(anx_st_writer_meta(w, "note", "quote \" and \\ survive") == 0);
    char err[512] = "";
    TU_CHECKF(anx_st_writer_commit(w, path, err, sizeof err) == 0, "commit: %s", err);
    anx_st_writer_free(w);

    /* raw bytes: LE length, header padded with spaces to a multiple of 8, keys in order */
    size_t n = 0;
    unsigned char *raw = read_bytes(path, &n);
    TU_CHECK(raw && n >= 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | raw[i];
    size_t data_bytes = sizeof a + sizeof b + sizeof c + sizeof scalar;
    TU_CHECKF(hlen % 8 == 0 && 8 + hlen + data_bytes == n, "hlen %" PRIu64 ", file %zu", hlen, n);
    const char *h = (const char *)raw + 8;
    TU_CHECK(strncmp(h, "{\"__metadata__\":{\"backend\":\"cpu\"", 32) == 0);
    const char *pa = strstr(h, "\"a\":"), *pb = strstr(h, "\"b.f64\":"), *pc = strstr(h, "\"c\":"),
               *pl = strstr(h, "\"loss\":"), *pe = strstr(h, "\"empty\":");
    TU_CHECKF(pa && pb && pc && pl && pe && pa < pb && pb < pc && pc < pl && pl < pe,
              "keys not in insertion order: %.*s", (int)hlen, h);
    TU_CHECKF(strstr(h, "\"loss\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[88,92]}") != NULL,
              "header: %.*s", (int)hlen, h);
    const char *close = memchr(h, '}', hlen) ? h + hlen - 1 : NULL;
    while (close && *close == ' ') close--;
    TU_CHECK(close && *close == '}');
    /* data right after the header, back to back: the F32 block first */
    TU_CHECK(memcmp(raw + 8 + hlen, a, sizeof a) == 0);
    TU_CHECK(memcmp(raw + 8 + hlen + sizeof a, b, sizeof b) == 0);
    free(raw);

    anx_st_file f;
    TU_CHECKF(anx_st_read(&f, path, err, sizeof err) == 0, "read: %s", err);
    TU_CHECK(f.count == 5);
    TU_CHECK(f.count == 5 && strcmp(f.tensors[0].name, "a") == 0 && strcmp(f.tensors[4].name, "empty") == 0);
    TU_CHECK(anx_st_meta(&f, "backend") && strcmp(anx_st_meta(&f, "backend"), "cpu") == 0);
    TU_CHECK(anx_st_meta(&f, "note") && strcmp(anx_st_meta(&f, "note"), "quote \" and \\ survive") == 0);
    TU_CHECK(anx_st_meta(&f, "missing") == NULL);
    const anx_st_tensor *t = anx_st_find(&f, "a");
    TU_CHECK(t && t->dtype == ANX_DTYPE_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->count == 6);
    float got[6];
    TU_CHECK(anx_st_get_f32(&f, "a", got, 6, sa, 2, err, sizeof err) == 0);
    for (int i = 0; i < 6; i++) TU_CHECKF(f32_bits(got[i]) == f32_bits(a[i]), "a[%d]", i);
    float gb[5];
    TU_CHECKF(anx_st_get_f32(&f, "b.f64", gb, 5, sb, 1, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < 5; i++)
        TU_CHECKF(f32_bits(gb[i]) == b_want[i], "b[%d] = 0x%08X, want 0x%08X", i, f32_bits(gb[i]), b_want[i]);
    int64_t gc[3];
    TU_CHECK(anx_st_get_i64(&f, "c", gc, 3, err, sizeof err) == 0);
    TU_CHECK(gc[0] == -1 && gc[1] == 7 && gc[2] == INT64_MAX);
    t = anx_st_find(&f, "loss");
    TU_CHECK(t && t->ndim == 0 && t->count == 1);
    float gl = 0;
    TU_CHECK(anx_st_get_f32(&f, "loss", &gl, 1, NULL, 0, err, sizeof err) == 0 && gl == 42.5f);
    t = anx_st_find(&f, "empty");
    TU_CHECK(t && t->ndim == 2 && t->count == 0);

    /* lookups that must fail, with the file and the tensor named, on one line */
    const int64_t wrong[2] = {3, 2};
    TU_CHECK(anx_st_get_f32(&f, "a", got, 6, wrong, 2, err, sizeof err) == 2);
    TU_CHECKF(strstr(err, path) && strstr(err, "[2, 3]") && strstr(err, "[3, 2]") && strstr(err, "(tensor a)"),
              "shape message: %s", err);
    TU_CHECK(anx_st_get_f32(&f, "a", got, 5, NULL, -1, err, sizeof err) == 2 && strstr(err, "(tensor a)"));
    TU_CHECK(anx_st_get_f32(&f, "c", got, 3, NULL, -1, err, sizeof err) == 2 && strstr(err, "I64"));
    TU_CHECK(anx_st_get_i64(&f, "a", gc, 6, err, sizeof err) == 2 && strstr(err, "F32"));
    TU_CHECK(anx_st_get_f32(&f, "nope", got, 1, NULL, -1, err, sizeof err) == 2);
    TU_CHECKF(strstr(err, path) && strstr(err, "(tensor nope)") && !strchr(err, '\n'), "missing: %s", err);
    anx_st_free(&f);

    /* writer misuse is reported by commit, and nothing is written */
    char p2[256];
    path_in(p2, sizeof p2, "dup.safetensors");
    w = anx_st_writer_new();
    TU_CHECK(anx_st_writer_add(w, "x", ANX_DTYPE_F32, NULL, 0, &scalar) == 0);
    TU_CHECK(anx_st_writer_add(w, "x", ANX_DTYPE_F32, NULL, 0, &scalar) != 0);
    TU_CHECK(anx_st_writer_commit(w, p2, err, sizeof err) == 2 && strstr(err, "(tensor x)"));
    anx_st_writer_free(w);
    TU_CHECK(access(p2, F_OK) != 0);
    unlink(path);
}

/* tests/io/fixture_py.safetensors, written by make_fixture.py with Python's json (", " and
 * ": " separators, tensors not in offset order, F64 and I64, metadata). */
static void test_python_fixture(void)
{
    const char *path = ANX_SOURCE_DIR "/tests/io/fixture_py.safetensors";
    anx_st_file f;
    char err[512];
    int rc = anx_st_read(&f, path, err, sizeof err);
    TU_CHECKF(rc == 0, "%s", err);
    if (rc) return;
    TU_CHECK(f.count == 3 && anx_st_meta(&f, "writer") && strcmp(anx_st_meta(&f, "writer"), "make_fixture.py") == 0);
    /* "w": F32 [2,2] = 0.5, -1.5, 2.0, 1/1024 */
    float w[4];
    const int64_t sw[2] = {2, 2};
    TU_CHECK(anx_st_get_f32(&f, "w", w, 4, sw, 2, err, sizeof err) == 0);
    TU_CHECK(w[0] == 0.5f && w[1] == -1.5f && w[2] == 2.0f && w[3] == 1.0f / 1024);
    /* "d": F64 [3] = 0.1, -3.0, 1e-3 */
    float d[3];
    TU_CHECK(anx_st_get_f32(&f, "d", d, 3, NULL, -1, err, sizeof err) == 0);
    TU_CHECK(d[0] == 0.1f && d[1] == -3.0f && d[2] == 1e-3f);
    /* "t": I64 [2] = 3, 9 */
    int64_t t[2];
    TU_CHECK(anx_st_get_i64(&f, "t", t, 2, err, sizeof err) == 0 && t[0] == 3 && t[1] == 9);
    anx_st_free(&f);
}

typedef struct {
    const char *what;
    const char *header;
    int64_t hlen;      /* -1: strlen(header) */
    size_t data_bytes; /* zero bytes appended */
    const char *must;  /* substring the message must have besides the path */
} bad_case;

static void test_bad_headers(void)
{
    static const bad_case cases[] = {
        {"header length past EOF", "{}", 4096, 0, "runs past the end"},
        {"not JSON", "{\"a\": {\"dtype\": \"F32\", ", -1, 0, "not valid JSON"},
        {"JSON but not an object", "[1, 2, 3]", -1, 0, "not an object"},
        {"garbage after the JSON", "{}  xx", -1, 0, "after its JSON"},
        {"entry not an object", "{\"a\": 3}", -1, 0, "(tensor a)"},
        {"unknown dtype", "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", -1, 4, "'F16'"},
        {"dtype missing", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 8, "(tensor a)"},
        {"shape not a list", "{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", -1, 8, "(tensor a)"},
        {"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", -1, 8, "non-negative"},
        {"fractional dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", -1, 8, "non-negative"},
        {"string dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", -1, 8, "non-negative"},
        {"9 dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", -1, 4, "at most 8"},
        {"offsets reversed", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", -1, 8, "data_offsets"},
        {"offsets past data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", -1, 8, "data_offsets"},
        {"offsets not a pair", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", -1, 8, "data_offsets"},
        {"size disagrees", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", -1, 8, "needs 12"},
        {"F64 size disagrees", "{\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 8, "needs 16"},
        {"huge shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", -1, 0, "(tensor a)"},
        {"overlap",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         -1, 12, "overlap"},
        {"duplicate key",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         -1, 8, "twice"},
        {"metadata not strings", "{\"__metadata__\":{\"step\":3}}", -1, 0, "(key step)"},
    };
    char path[256], err[512], files[512];
    path_in(path, sizeof path, "bad.safetensors");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        unsigned char zeros[64] = {0};
        write_raw(path, c->header, zeros, c->data_bytes, c->hlen);
        anx_st_file f;
        memset(err, 0, sizeof err);
        int rc = anx_st_read(&f, path, err, sizeof err);
        TU_CHECKF(rc == 2, "%s: read returned %d", c->what, rc);
        TU_CHECKF(strncmp(err, path, strlen(path)) == 0 && strstr(err, c->must) && !strchr(err, '\n'),
                  "%s: message '%s' lacks the path or '%s'", c->what, err, c->must);
        TU_CHECKF(f.tensors == NULL && f.buf == NULL, "%s: failed read left memory behind", c->what);
    }
    /* shorter than the length field */
    FILE *fp = fopen(path, "wb");
    fwrite("\x02\0\0\0\0", 1, 5, fp);
    fclose(fp);
    anx_st_file f;
    TU_CHECK(anx_st_read(&f, path, err, sizeof err) == 2);
    TU_CHECKF(strstr(err, path) && strstr(err, "5 bytes"), "short: %s", err);
    /* a file that is not there */
    unlink(path);
    TU_CHECK(anx_st_read(&f, path, err, sizeof err) == 2 && strstr(err, path) && strstr(err, "No such file"));
    /* a directory */
    TU_CHECK(anx_st_read(&f, dir, err, sizeof err) == 2 && strstr(err, "not a regular file"));
    TU_CHECKF(count_files(files, sizeof files) == 0, "left behind: %s", files);
}

/* A commit whose write() fails (EFBIG under RLIMIT_FSIZE, like ENOSPC on a full disk) must
 * report it, keep the previous file, and leave no temporary file. */
static void test_failed_write(void)
{
    char path[256], err[512], files[512];
    path_in(path, sizeof path, "keep.safetensors");
    const float old = 1.0f;
    anx_st_writer *w = anx_st_writer_new();
    anx_st_writer_add(w, "old", ANX_DTYPE_F32, NULL, 0, &old);
    TU_CHECK(anx_st_writer_commit(w, path, err, sizeof err) == 0);
    anx_st_writer_free(w);

    enum { BIG = 1 << 16 };
    float *big = calloc(BIG, sizeof(float));
    const int64_t shape[1] = {BIG};
    w = anx_st_writer_new();
    anx_st_writer_add(w, "big", ANX_DTYPE_F32, shape, 1, big);
    struct rlimit saved, lim;
    getrlimit(RLIMIT_FSIZE, &saved);
    lim = saved;
    lim.rlim_cur = 4096;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    TU_CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    int rc = anx_st_writer_commit(w, path, err, sizeof err);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, old_handler);
    TU_CHECKF(rc == 2, "commit past RLIMIT_FSIZE returned %d", rc);
    TU_CHECKF(strncmp(err, path, strlen(path)) == 0 && strstr(err, "write failed") && strstr(err, "File too large") &&
                  !strchr(err, '\n'),
              "message: %s", err);
    TU_CHECKF(count_files(files, sizeof files) == 1, "files after failed commit: %s", files);
    anx_st_file f;
    TU_CHECK(anx_st_read(&f, path, err, sizeof err) == 0 && f.count == 1 && anx_st_find(&f, "old"));
    anx_st_free(&f);

    /* a directory that does not exist: nothing created anywhere */
    char nodir[256];
    path_in(nodir, sizeof nodir, "no/such/dir/x.safetensors");
    TU_CHECK(anx_st_writer_commit(w, nodir, err, sizeof err) == 2);
    TU_CHECKF(strstr(err, nodir) && strstr(err, "temporary file"), "no dir: %s", err);
    anx_st_writer_free(w);
    free(big);
    unlink(path);
    TU_CHECKF(count_files(files, sizeof files) == 0, "left behind: %s", files);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/anx_test_io_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_round_trip();
    test_python_fixture();
    test_bad_headers();
    test_failed_write();
    remove_all();
    rmdir(dir);
    return tu_finish("test_safetensors");
}
