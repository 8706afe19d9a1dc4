/* safetensors reader and writer (anx/safetensors.h).
 *
 * File: u64 little-endian header length N | N bytes of JSON | data.  The JSON is parsed with
 * cJSON and everything in it is checked before a single tensor is handed out, so a caller can
 * trust count, shape and the data pointer of every tensor it finds.
 * Writer: header keys in insertion order (__metadata__ first), header padded with spaces so
 * the data starts 8-byte aligned, tensors packed back to back with no holes (the Rust
 * safetensors reader refuses holes), committed through mkstemp + fsync + rename.
 */
#include "anx/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "anx reads and writes safetensors data as host memory: little-endian hosts only"
#endif

enum { ST_MAX_NDIM = 8 };

/* Largest integer a JSON number (a double in cJSON) holds exactly. */
#define ST_MAX_EXACT 9007199254740992.0 /* 2^53 */

static const char *const dtype_names[] = {"F32", "F64", "I64"};
static const size_t dtype_sizes[] = {4, 8, 8};

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* "[96, 3, 11, 11]" for messages */
static const char *shape_str(char *buf, size_t cap, const int64_t *shape, int ndim)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

/* ------------------------------------------------------------------------------------------ */
/* reading */

/* The whole file into memory: 0, or 2 with err. */
static int slurp(const char *path, unsigned char **out, size_t *size, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return 2;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        set_err(err, errlen, "%s: not a regular file", path);
        close(fd);
        return 2;
    }
    size_t n = (size_t)st.st_size;
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf) {
        set_err(err, errlen, "%s: out of memory reading %zu bytes", path, n);
        close(fd);
        return 2;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            set_err(err, errlen, "%s: read failed after %zu of %zu bytes: %s", path, got, n,
                    r < 0 ? strerror(errno) : "file shrank while reading");
            free(buf);
            close(fd);
            return 2;
        }
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    *size = n;
    return 0;
}

/* A JSON number that is an integer in [0, 2^53]: its value, else -1. */
static int64_t json_uint(const cJSON *v)
{
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > ST_MAX_EXACT || d != floor(d)) return -1;
    return (int64_t)d;
}

static int parse_dtype(const cJSON *v, anx_dtype *dt)
{
    if (!cJSON_IsString(v)) return -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(v->valuestring, dtype_names[i]) == 0) {
            *dt = (anx_dtype)i;
            return 0;
        }
    return -1;
}

/* One tensor entry of the header; its begin/end offsets into the data go to off[2]. */
static int parse_tensor(anx_st_tensor *t, uint64_t off[2], const cJSON *e, const char *path,
                        size_t data_size, char *err, size_t errlen)
{
    const char *name = e->string;
    if (!cJSON_IsObject(e)) {
        set_err(err, errlen, "%s: header entry is not an object (tensor %s)", path, name);
        return 2;
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (parse_dtype(dt, &t->dtype)) {
        if (cJSON_IsString(dt))
            set_err(err, errlen, "%s: unsupported dtype '%.16s', anx reads F32, F64 and I64 (tensor %s)",
                    path, dt->valuestring, name);
        else
            set_err(err, errlen, "%s: dtype missing or not a string (tensor %s)", path, name);
        return 2;
    }
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(shape)) {
        set_err(err, errlen, "%s: shape missing or not a list (tensor %s)", path, name);
        return 2;
    }
    int nd = cJSON_GetArraySize(shape);
    if (nd > ST_MAX_NDIM) {
        set_err(err, errlen, "%s: shape has %d dimensions, anx reads at most %d (tensor %s)", path,
                nd, ST_MAX_NDIM, name);
        return 2;
    }
    t->ndim = nd;
    /* count in a double as well, so an overflowing product is caught before size_t wraps */
    size_t count = 1;
    double dcount = 1.0;
    const cJSON *d;
    int i = 0;
    cJSON_ArrayForEach(d, shape)
    {
        int64_t v = json_uint(d);
        if (v < 0) {
            set_err(err, errlen, "%s: shape is not a list of non-negative integers (tensor %s)", path, name);
            return 2;
        }
        t->shape[i++] = v;
        count *= (size_t)v;
        dcount *= (double)v;
    }
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    int64_t b = -1, en = -1;
    if (cJSON_IsArray(offs) && cJSON_GetArraySize(offs) == 2) {
        b = json_uint(cJSON_GetArrayItem(offs, 0));
        en = json_uint(cJSON_GetArrayItem(offs, 1));
    }
    if (b < 0 || en < 0 || b > en || (uint64_t)en > data_size) {
        set_err(err, errlen,
                "%s: data_offsets must be [begin, end] with 0 <= begin <= end <= %zu (the data size) (tensor %s)",
                path, data_size, name);
        return 2;
    }
    size_t es = dtype_sizes[t->dtype];
    if (dcount * (double)es > (double)data_size || count * es != (size_t)(en - b)) {
        char sh[160];
        set_err(err, errlen, "%s: data_offsets [%" PRId64 ", %" PRId64 "] hold %" PRId64
                " bytes but %s shape %s needs %.0f (tensor %s)",
                path, b, en, en - b, dtype_names[t->dtype], shape_str(sh, sizeof sh, t->shape, nd),
                dcount * (double)es, name);
        return 2;
    }
    t->count = count;
    off[0] = (uint64_t)b, off[1] = (uint64_t)en;
    return 0;
}

static int parse_metadata(anx_st_file *f, const cJSON *m, char *err, size_t errlen)
{
    if (!cJSON_IsObject(m)) {
        set_err(err, errlen, "%s: __metadata__ is not an object", f->path);
        return 2;
    }
    int n = cJSON_GetArraySize(m);
    f->meta_keys = calloc((size_t)n + 1, sizeof(char *));
    f->meta_values = calloc((size_t)n + 1, sizeof(char *));
    if (!f->meta_keys || !f->meta_values) {
        set_err(err, errlen, "%s: out of memory", f->path);
        return 2;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, m)
    {
        if (!cJSON_IsString(e)) {
            set_err(err, errlen, "%s: __metadata__ value is not a string (key %s)", f->path, e->string);
            return 2;
        }
        int k = f->meta_count;
        f->meta_keys[k] = dup_str(e->string);
        f->meta_values[k] = dup_str(e->valuestring);
        if (!f->meta_keys[k] || !f->meta_values[k]) {
            set_err(err, errlen, "%s: out of memory", f->path);
            return 2;
        }
        f->meta_count++;
    }
    return 0;
}

typedef struct {
    uint64_t b, e;
    int idx;
} st_span;

static int span_cmp(const void *a, const void *b)
{
    const st_span *x = a, *y = b;
    if (x->b != y->b) return x->b < y->b ? -1 : 1;
    return x->e < y->e ? -1 : x->e > y->e;
}

/* Two tensors must never share bytes (empty tensors share nothing). */
static int check_overlaps(const anx_st_file *f, st_span *spans, char *err, size_t errlen)
{
    qsort(spans, (size_t)f->count, sizeof *spans, span_cmp);
    int last = -1;
    for (int i = 0; i < f->count; i++) {
        if (spans[i].b == spans[i].e) continue;
        if (last >= 0 && spans[i].b < spans[last].e) {
            set_err(err, errlen, "%s: data of two tensors overlap, %s and %s (tensor %s)", f->path,
                    f->tensors[spans[last].idx].name, f->tensors[spans[i].idx].name,
                    f->tensors[spans[i].idx].name);
            return 2;
        }
        last = i;
    }
    return 0;
}

/* Validates the parsed header and fills f->tensors / metadata. */
static int parse_header(anx_st_file *f, const cJSON *root, const unsigned char *data,
                        size_t data_size, char *err, size_t errlen)
{
    int n = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)n + 1, sizeof *f->tensors);
    st_span *spans = calloc((size_t)n + 1, sizeof *spans);
    if (!f->tensors || !spans) {
        free(spans);
        set_err(err, errlen, "%s: out of memory", f->path);
        return 2;
    }
    int rc = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root)
    {
        /* cJSON keeps duplicate keys; a file with two entries of one name is ambiguous */
        for (const cJSON *p = root->child; p != e; p = p->next)
            if (strcmp(p->string, e->string) == 0) {
                set_err(err, errlen, "%s: header names this key twice (tensor %s)", f->path, e->string);
                rc = 2;
                goto out;
            }
        if (strcmp(e->string, "__metadata__") == 0) {
            if ((rc = parse_metadata(f, e, err, errlen))) goto out;
            continue;
        }
        anx_st_tensor *t = &f->tensors[f->count];
        uint64_t off[2];
        if ((rc = parse_tensor(t, off, e, f->path, data_size, err, errlen))) goto out;
        if (!(t->name = dup_str(e->string))) {
            set_err(err, errlen, "%s: out of memory", f->path);
            rc = 2;
            goto out;
        }
        t->data = data + off[0];
        spans[f->count] = (st_span){off[0], off[1], f->count};
        f->count++;
    }
    rc = check_overlaps(f, spans, err, errlen);
out:
    free(spans);
    return rc;
}

int anx_st_read(anx_st_file *f, const char *path, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    if (!(f->path = dup_str(path))) {
        set_err(err, errlen, "%s: out of memory", path);
        return 2;
    }
    int rc = slurp(path, &f->buf, &f->size, err, errlen);
    if (rc) goto fail;
    rc = 2;
    if (f->size < 8) {
        set_err(err, errlen, "%s: file is %zu bytes, too short for the 8-byte header length", path, f->size);
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f->buf[i];
    if (hlen > f->size - 8) {
        set_err(err, errlen, "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes)",
                path, hlen, f->size);
        goto fail;
    }
    const char *json = (const char *)f->buf + 8;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)hlen, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t pos = at && at >= json && at <= json + hlen ? (size_t)(at - json) : 0;
        set_err(err, errlen, "%s: header is not valid JSON (error near header byte %zu)", path, pos);
        goto fail;
    }
    /* what follows the JSON value inside the header may only be padding */
    for (const char *p = end; p < json + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            set_err(err, errlen, "%s: header has bytes after its JSON value (header byte %zu)", path,
                    (size_t)(p - json));
            cJSON_Delete(root);
            goto fail;
        }
    if (!cJSON_IsObject(root)) {
        set_err(err, errlen, "%s: header is JSON but not an object", path);
        cJSON_Delete(root);
        goto fail;
    }
    const unsigned char *data = f->buf + 8 + hlen;
    rc = parse_header(f, root, data, f->size - 8 - (size_t)hlen, err, errlen);
    cJSON_Delete(root);
    if (rc) goto fail;
    return 0;
fail:
    anx_st_free(f);
    return 2;
}

void anx_st_free(anx_st_file *f)
{
    if (!f) return;
    for (int i = 0; f->tensors && i < f->count; i++) free(f->tensors[i].name);
    for (int i = 0; i < f->meta_count; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->tensors);
    free(f->buf);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const anx_st_tensor *anx_st_find(const anx_st_file *f, const char *name)
{
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *anx_st_meta(const anx_st_file *f, const char *key)
{
    for (int i = 0; i < f->meta_count; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

static const anx_st_tensor *find_or_err(const anx_st_file *f, const char *name, char *err, size_t errlen)
{
    const anx_st_tensor *t = anx_st_find(f, name);
    if (!t) set_err(err, errlen, "%s: not found (tensor %s)", f->path, name);
    return t;
}

int anx_st_get_f32(const anx_st_file *f, const char *name, float *out, size_t count,
                   const int64_t *shape, int ndim, char *err, size_t errlen)
{
    const anx_st_tensor *t = find_or_err(f, name, err, errlen);
    if (!t) return 2;
    if (t->dtype != ANX_DTYPE_F32 && t->dtype != ANX_DTYPE_F64) {
        set_err(err, errlen, "%s: dtype %s where F32 or F64 is expected (tensor %s)", f->path,
                dtype_names[t->dtype], name);
        return 2;
    }
    char want[160], got[160];
    if (ndim >= 0) {
        int same = t->ndim == ndim;
        for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
        if (!same) {
            set_err(err, errlen, "%s: shape %s, expected %s (tensor %s)", f->path,
                    shape_str(got, sizeof got, t->shape, t->ndim), shape_str(want, sizeof want, shape, ndim),
                    name);
            return 2;
        }
    }
    if (t->count != count) {
        set_err(err, errlen, "%s: shape %s has %zu elements, expected %zu (tensor %s)", f->path,
                shape_str(got, sizeof got, t->shape, t->ndim), t->count, count, name);
        return 2;
    }
    if (t->dtype == ANX_DTYPE_F32) {
        memcpy(out, t->data, count * sizeof(float));
    } else {
        const unsigned char *p = t->data;
        for (size_t i = 0; i < count; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            out[i] = (float)d; /* round to nearest, as torch's .float() */
        }
    }
    return 0;
}

int anx_st_get_i64(const anx_st_file *f, const char *name, int64_t *out, size_t count, char *err,
                   size_t errlen)
{
    const anx_st_tensor *t = find_or_err(f, name, err, errlen);
    if (!t) return 2;
    if (t->dtype != ANX_DTYPE_I64) {
        set_err(err, errlen, "%s: dtype %s where I64 is expected (tensor %s)", f->path,
                dtype_names[t->dtype], name);
        return 2;
    }
    if (t->count != count) {
        char got[160];
        set_err(err, errlen, "%s: shape %s has %zu elements, expected %zu (tensor %s)", f->path,
                shape_str(got, sizeof got, t->shape, t->ndim), t->count, count, name);
        return 2;
    }
    memcpy(out, t->data, count * sizeof(int64_t));
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* writing */

typedef struct st_entry {
    char *name;
    anx_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_NDIM];
    size_t bytes;
    unsigned char *data;
} st_entry;

struct anx_st_writer {
    st_entry *e;
    int n, cap;
    char **meta_k, **meta_v;
    int nmeta, meta_cap;
    char error[256]; /* the first failed add, reported by commit */
};

anx_st_writer *anx_st_writer_new(void) { return calloc(1, sizeof(anx_st_writer)); }

static int writer_fail(anx_st_writer *w, const char *fmt, const char *name)
{
    if (!w->error[0]) snprintf(w->error, sizeof w->error, fmt, name);
    return 2;
}

static int writer_has(const anx_st_writer *w, const char *name)
{
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0) return 1;
    return strcmp(name, "__metadata__") == 0;
}

int anx_st_writer_add(anx_st_writer *w, const char *name, anx_dtype dtype, const int64_t *shape,
                      int ndim, const void *data)
{
    if (!name || !*name || writer_has(w, name))
        return writer_fail(w, "empty or duplicate tensor name (tensor %s)", name ? name : "");
    if (ndim < 0 || ndim > ST_MAX_NDIM || (unsigned)dtype > ANX_DTYPE_I64)
        return writer_fail(w, "bad ndim or dtype (tensor %s)", name);
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return writer_fail(w, "negative dimension (tensor %s)", name);
        count *= (size_t)shape[i];
    }
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 32;
        st_entry *ne = realloc(w->e, (size_t)cap * sizeof *ne);
        if (!ne) return writer_fail(w, "out of memory (tensor %s)", name);
        w->e = ne, w->cap = cap;
    }
    st_entry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->bytes = count * dtype_sizes[dtype];
    e->name = dup_str(name);
    e->data = malloc(e->bytes ? e->bytes : 1);
    if (!e->name || !e->data) {
        free(e->name);
        free(e->data);
        return writer_fail(w, "out of memory (tensor %s)", name);
    }
    if (e->bytes) memcpy(e->data, data, e->bytes);
    w->n++;
    return 0;
}

int anx_st_writer_meta(anx_st_writer *w, const char *key, const char *value)
{
    for (int i = 0; i < w->nmeta; i++)
        if (strcmp(w->meta_k[i], key) == 0) return writer_fail(w, "duplicate metadata key %s", key);
    if (w->nmeta == w->meta_cap) {
        int cap = w->meta_cap ? 2 * w->meta_cap : 8;
        char **k = realloc(w->meta_k, (size_t)cap * sizeof *k);
        if (k) w->meta_k = k;
        char **v = realloc(w->meta_v, (size_t)cap * sizeof *v);
        if (v) w->meta_v = v;
        if (!k || !v) return writer_fail(w, "out of memory (metadata %s)", key);
        w->meta_cap = cap;
    }
    char *k = dup_str(key), *v = dup_str(value);
    if (!k || !v) {
        free(k);
        free(v);
        return writer_fail(w, "out of memory (metadata %s)", key);
    }
    w->meta_k[w->nmeta] = k;
    w->meta_v[w->nmeta] = v;
    w->nmeta++;
    return 0;
}

/* An integer as raw JSON text: cJSON would print a double ("1e+15" for big offsets). */
static cJSON *json_int(int64_t v)
{
    char s[32];
    snprintf(s, sizeof s, "%" PRId64, v);
    return cJSON_CreateRaw(s);
}

/* The header JSON, or NULL on out of memory. */
static char *writer_header(const anx_st_writer *w)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    int ok = 1;
    if (w->nmeta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        ok = m != NULL;
        for (int i = 0; ok && i < w->nmeta; i++) ok = cJSON_AddStringToObject(m, w->meta_k[i], w->meta_v[i]) != NULL;
    }
    uint64_t off = 0;
    for (int i = 0; ok && i < w->n; i++) {
        const st_entry *e = &w->e[i];
        cJSON *t = cJSON_AddObjectToObject(root, e->name), *shape = NULL, *offs = NULL;
        ok = t && cJSON_AddStringToObject(t, "dtype", dtype_names[e->dtype]) &&
             (shape = cJSON_AddArrayToObject(t, "shape")) != NULL;
        for (int d = 0; ok && d < e->ndim; d++) ok = cJSON_AddItemToArray(shape, json_int(e->shape[d]));
        if (ok) ok = (offs = cJSON_AddArrayToObject(t, "data_offsets")) != NULL;
        if (ok) ok = cJSON_AddItemToArray(offs, json_int((int64_t)off));
        off += e->bytes;
        if (ok) ok = cJSON_AddItemToArray(offs, json_int((int64_t)off));
    }
    char *s = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return s;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    while (n) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : n;
        ssize_t r = write(fd, p, chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) {
            errno = EIO;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Writes the whole file to fd: 0, or -1 with errno and the failing step in *what.  sync: fsync
 * at the end (a regular file; a device such as /dev/null refuses fsync with EINVAL). */
static int write_file(const anx_st_writer *w, int fd, const char **what, int sync)
{
    *what = "out of memory building the header";
    char *json = writer_header(w);
    if (!json) {
        errno = ENOMEM;
        return -1;
    }
    size_t len = strlen(json);
    size_t padded = (len + 7) & ~(size_t)7; /* 8 + padded is a multiple of 8: aligned data */
    unsigned char *head = malloc(8 + padded);
    if (!head) {
        free(json);
        errno = ENOMEM;
        return -1;
    }
    for (int i = 0; i < 8; i++) head[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(head + 8, json, len);
    memset(head + 8 + len, ' ', padded - len);
    free(json);
    *what = "write";
    int rc = write_all(fd, head, 8 + padded);
    free(head);
    for (int i = 0; rc == 0 && i < w->n; i++) rc = write_all(fd, w->e[i].data, w->e[i].bytes);
    if (rc == 0 && sync && fsync(fd) != 0) *what = "fsync", rc = -1;
    return rc;
}

/* After the rename, make the directory entry durable too (best effort). */
static void sync_dir_of(const char *path)
{
    char *copy = dup_str(path);
    if (!copy) return;
    int dfd = open(dirname(copy), O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(copy);
}

/* A path that exists and is not a regular file (/dev/null, /dev/full, a FIFO, a directory) is
 * written in place: a temporary file renamed over it would replace the device node itself when
 * run as root (/dev/full would become a regular file), and a directory cannot be replaced. */
static int commit_in_place(const anx_st_writer *w, const char *path, char *err, size_t errlen)
{
    const char *what = "open";
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    int rc = fd < 0 ? -1 : write_file(w, fd, &what, 0);
    int saved = errno;
    if (fd >= 0 && close(fd) != 0 && rc == 0) what = "close", rc = -1, saved = errno;
    if (rc == 0) return 0;
    set_err(err, errlen, "%s: %s failed: %s (not a regular file, written in place)", path, what, strerror(saved));
    return 2;
}

int anx_st_writer_commit(anx_st_writer *w, const char *path, char *err, size_t errlen)
{
    if (w->error[0]) {
        set_err(err, errlen, "%s: not written: %s", path, w->error);
        return 2;
    }
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) return commit_in_place(w, path, err, errlen);
    size_t n = strlen(path);
    char *tmp = malloc(n + 16);
    if (!tmp) {
        set_err(err, errlen, "%s: out of memory", path);
        return 2;
    }
    snprintf(tmp, n + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        set_err(err, errlen, "%s: cannot create temporary file %s: %s", path, tmp, strerror(errno));
        free(tmp);
        return 2;
    }
    /* mkstemp makes 0600; a data file gets the usual 0666 & ~umask */
    mode_t mask = umask(022);
    umask(mask);
    const char *what = "fchmod";
    int rc = fchmod(fd, 0666 & ~mask);
    if (rc == 0) rc = write_file(w, fd, &what, 1);
    int saved = errno;
    if (close(fd) != 0 && rc == 0) what = "close", rc = -1, saved = errno;
    if (rc == 0 && rename(tmp, path) != 0) what = "rename", rc = -1, saved = errno;
    if (rc != 0) {
        unlink(tmp);
        set_err(err, errlen, "%s: %s failed: %s (nothing written)", path, what, strerror(saved));
        free(tmp);
        return 2;
    }
    free(tmp);
    sync_dir_of(path);
    return 0;
}

void anx_st_writer_free(anx_st_writer *w)
{
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->e[i].name);
        free(w->e[i].data);
    }
    for (int i = 0; i < w->nmeta; i++) {
        free(w->meta_k[i]);
        free(w->meta_v[i]);
    }
    free(w->e);
    free(w->meta_k);
    free(w->meta_v);
    free(w);
}
