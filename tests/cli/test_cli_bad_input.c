/* test_cli_bad_input: `anx step` and `anx summary` refuse bad input the same way every time:
 * exit status 2, exactly one line on stderr naming the file / tensor / flag at fault and what
 * is wrong, nothing on stdout, and no --dump file (nor a temporary one) left behind.
 *
 * The files are made here: well-formed ones with our writer, broken ones byte by byte.  Every
 * case is refused before the network is built, so the whole test takes well under a second.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "anx/safetensors.h"
#include "spawn.h"
#include "testutil.h"

static char dir[128], outdir[160], dump[200];
static int nfixtures;

static const char *fx(const char *name)
{
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* A well-formed file from (name, dtype, shape, data) entries. */
typedef struct {
    const char *name;
    anx_dtype dtype;
    int ndim;
    int64_t shape[4];
    const void *data;
} entry;

static void write_file(const char *name, const entry *e, int n)
{
    anx_st_writer *w = anx_st_writer_new();
    for (int i = 0; i < n; i++) anx_st_writer_add(w, e[i].name, e[i].dtype, e[i].shape, e[i].ndim, e[i].data);
    char err[512];
    if (anx_st_writer_commit(w, fx(name), err, sizeof err)) {
        fprintf(stderr, "fixture %s: %s\n", name, err);
        exit(1);
    }
    anx_st_writer_free(w);
    nfixtures++;
}

static void write_raw(const char *name, const char *header, int64_t hlen, size_t data_bytes)
{
    FILE *f = fopen(fx(name), "wb");
    uint64_t n = hlen >= 0 ? (uint64_t)hlen : strlen(header);
    for (int i = 0; i < 8; i++) fputc((int)((n >> (8 * i)) & 0xff), f);
    fputs(header, f);
    for (size_t i = 0; i < data_bytes; i++) fputc(0, f);
    fclose(f);
    nfixtures++;
}

static float *zeros_f(size_t n) { return calloc(n, sizeof(float)); }

static void make_fixtures(void)
{
    const size_t img = 227 * 227, w0 = 96 * 121, w6 = 10 * 4096;
    float *x = zeros_f(img * 2), *c0 = zeros_f(w0), *b0 = zeros_f(96), *f6 = zeros_f(w6),
          *c3 = zeros_f(256 * 96 * 9), *mask = zeros_f(4096);
    for (size_t i = 0; i < img * 2; i++) x[i] = (float)(i % 255) / 255.0f;
    for (size_t i = 0; i < 4096; i++) mask[i] = i % 3 ? 2.0f : 0.5f; /* 0.5 is not a Dropout(0.5) value */
    const int64_t t3[1] = {3}, t10[1] = {10};
    const float tf[1] = {3.0f};

    write_file("in.safetensors",
               (entry[]){{"input", ANX_DTYPE_F32, 4, {1, 1, 227, 227}, x}, {"target", ANX_DTYPE_I64, 1, {1}, t3}}, 2);
    write_file("in_nonsquare.safetensors",
               (entry[]){{"input", ANX_DTYPE_F32, 4, {1, 1, 227, 226}, x}, {"target", ANX_DTYPE_I64, 1, {1}, t3}}, 2);
    write_file("in_small.safetensors",
               (entry[]){{"input", ANX_DTYPE_F32, 4, {1, 1, 100, 100}, x}, {"target", ANX_DTYPE_I64, 1, {1}, t3}}, 2);
    write_file("in_target10.safetensors",
               (entry[]){{"input", ANX_DTYPE_F32, 4, {1, 1, 227, 227}, x}, {"target", ANX_DTYPE_I64, 1, {1}, t10}}, 2);
    write_file("in_target_f32.safetensors",
               (entry[]){{"input", ANX_DTYPE_F32, 4, {1, 1, 227, 227}, x}, {"target", ANX_DTYPE_F32, 1, {1}, tf}}, 2);
    write_file("in_no_target.safetensors", (entry[]){{"input", ANX_DTYPE_F32, 4, {1, 1, 227, 227}, x}}, 1);
    write_file("in_one_mask.safetensors",
               (entry[]){{"input", ANX_DTYPE_F32, 4, {1, 1, 227, 227}, x},
                         {"target", ANX_DTYPE_I64, 1, {1}, t3},
                         {"mask.Dropout-16", ANX_DTYPE_F32, 2, {1, 4096}, mask}},
               3);
    write_file("in_bad_mask.safetensors",
               (entry[]){{"input", ANX_DTYPE_F32, 4, {1, 1, 227, 227}, x},
                         {"target", ANX_DTYPE_I64, 1, {1}, t3},
                         {"mask.Dropout-16", ANX_DTYPE_F32, 2, {1, 4096}, mask},
                         {"mask.Dropout-19", ANX_DTYPE_F32, 2, {1, 4096}, mask}},
               4);
    write_file("w_missing.safetensors",
               (entry[]){{"conv.0.weight", ANX_DTYPE_F32, 4, {96, 1, 11, 11}, c0},
                         {"fc.6.weight", ANX_DTYPE_F32, 2, {10, 4096}, f6}},
               2);
    write_file("w_shape.safetensors",
               (entry[]){{"conv.0.weight", ANX_DTYPE_F32, 4, {96, 1, 11, 11}, c0},
                         {"conv.0.bias", ANX_DTYPE_F32, 1, {96}, b0},
                         {"conv.3.weight", ANX_DTYPE_F32, 4, {256, 96, 3, 3}, c3},
                         {"fc.6.weight", ANX_DTYPE_F32, 2, {10, 4096}, f6}},
               4);
    write_file("w_typo.safetensors",
               (entry[]){{"conv.0.weight", ANX_DTYPE_F32, 4, {96, 1, 11, 11}, c0},
                         {"conv.0.weigth", ANX_DTYPE_F32, 1, {96}, b0},
                         {"fc.6.weight", ANX_DTYPE_F32, 2, {10, 4096}, f6}},
               3);
    write_file("w_no_fc6.safetensors", (entry[]){{"conv.0.weight", ANX_DTYPE_F32, 4, {96, 1, 11, 11}, c0}}, 1);

    write_raw("short.safetensors", "{", 3, 0); /* 8 + 1 = 9 bytes: header length 3 past the end */
    FILE *f = fopen(fx("tiny.safetensors"), "wb");
    fwrite("\x10\0\0\0\0", 1, 5, f);
    fclose(f);
    nfixtures++;
    write_raw("hlen.safetensors", "{}", 1 << 20, 0);
    write_raw("notjson.safetensors", "{\"input\": [1, 2", -1, 0);
    write_raw("f16.safetensors", "{\"input\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", -1, 4);
    write_raw("size.safetensors", "{\"input\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", -1, 8);
    /* a good file cut in the middle of its data */
    size_t n = 0;
    char *whole = tu_slurp(fx("in.safetensors"), &n);
    f = fopen(fx("cut.safetensors"), "wb");
    fwrite(whole, 1, n / 2, f);
    fclose(f);
    free(whole);
    nfixtures++;
    free(x), free(c0), free(b0), free(f6), free(c3), free(mask);
}

/* args end with NULL; for step, --dump OUTDIR/o.safetensors is appended. must1/must2: what the single
 * stderr line has to name. */
static void expect_bad(const char *what, const char *const *args, const char *must1, const char *must2)
{
    const char *argv[40];
    int n = 0;
    for (; args[n]; n++) argv[n] = args[n];
    if (strcmp(args[0], "step") == 0) argv[n++] = "--dump", argv[n++] = dump;
    argv[n] = NULL;
    tu_run r = tu_spawn(&(tu_spawn_opts){0}, argv);
    TU_CHECKF(r.status == 2, "%s: exit status %d, want 2 (stderr: %s)", what, r.status, r.err);
    TU_CHECKF(r.err_lines == 1 && r.err[strlen(r.err) - 1] == '\n', "%s: want exactly one line on stderr, got: %s",
              what, r.err);
    TU_CHECKF(strstr(r.err, must1) && (!must2 || strstr(r.err, must2)),
              "%s: stderr must name '%s' and '%s', got: %s", what, must1, must2 ? must2 : "", r.err);
    TU_CHECKF(strncmp(r.err, "anx ", 4) == 0, "%s: message does not start with 'anx <cmd>: ': %s", what, r.err);
    TU_CHECKF(r.out[0] == '\0', "%s: printed on stdout: %s", what, r.out);
    char names[512];
    TU_CHECKF(tu_list_dir(outdir, names, sizeof names) == 0, "%s: left behind in the dump directory: %s", what,
              names);
    TU_CHECKF(tu_list_dir(dir, names, sizeof names) == nfixtures + 1, "%s: files appeared next to the inputs: %s",
              what, names);
    tu_run_free(&r);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

int main(void)
{
    tu_scratch_dir(dir, sizeof dir, "cli_bad");
    snprintf(outdir, sizeof outdir, "%s/out", dir);
    snprintf(dump, sizeof dump, "%s/o.safetensors", outdir);
    if (mkdir(outdir, 0755)) {
        perror(outdir);
        return 1;
    }
    make_fixtures();

    /* files the safetensors reader refuses */
    expect_bad("file shorter than 8 bytes", ARGS("step", "--input", fx("tiny.safetensors")), fx("tiny.safetensors"),
               "too short");
    expect_bad("truncated header", ARGS("step", "--input", fx("short.safetensors")), fx("short.safetensors"),
               "runs past the end");
    expect_bad("header length past EOF", ARGS("step", "--weights", fx("hlen.safetensors")), fx("hlen.safetensors"),
               "header length 1048576");
    expect_bad("truncated data", ARGS("step", "--input", fx("cut.safetensors")), fx("cut.safetensors"),
               "data_offsets");
    expect_bad("header not JSON", ARGS("step", "--input", fx("notjson.safetensors")), fx("notjson.safetensors"),
               "not valid JSON");
    expect_bad("unknown dtype", ARGS("step", "--input", fx("f16.safetensors")), fx("f16.safetensors"),
               "'F16'");
    expect_bad("size disagrees with offsets", ARGS("step", "--input", fx("size.safetensors")),
               fx("size.safetensors"), "needs 12 (tensor input)");
    expect_bad("missing file", ARGS("step", "--input", fx("nope.safetensors")), fx("nope.safetensors"),
               "No such file");

    /* weights that do not fit Alexnet */
    expect_bad("missing key", ARGS("step", "--weights", fx("w_missing.safetensors")), fx("w_missing.safetensors"),
               "not found (tensor conv.0.bias)");
    expect_bad("missing fc.6", ARGS("step", "--weights", fx("w_no_fc6.safetensors")), fx("w_no_fc6.safetensors"),
               "(tensor fc.6.weight)");
    expect_bad("wrong shape", ARGS("step", "--weights", fx("w_shape.safetensors")), fx("w_shape.safetensors"),
               "shape [256, 96, 3, 3], expected [256, 96, 5, 5] for Alexnet(1, 10) (tensor conv.3.weight)");
    expect_bad("misspelt key", ARGS("step", "--weights", fx("w_typo.safetensors")), fx("w_typo.safetensors"),
               "(tensor conv.0.weigth)");
    expect_bad("--in-dim disagrees with weights",
               ARGS("step", "--in-dim", "3", "--weights", fx("w_missing.safetensors")), "--in-dim 3",
               fx("w_missing.safetensors"));

    /* batches that do not fit */
    expect_bad("input not square", ARGS("step", "--input", fx("in_nonsquare.safetensors")),
               fx("in_nonsquare.safetensors"), "H == W (tensor input)");
    expect_bad("input size the model refuses", ARGS("step", "--input", fx("in_small.safetensors")),
               fx("in_small.safetensors"), "Linear-14");
    expect_bad("target out of range", ARGS("step", "--classes", "10", "--input", fx("in_target10.safetensors")),
               fx("in_target10.safetensors"), "target[0] = 10");
    expect_bad("target not I64", ARGS("step", "--input", fx("in_target_f32.safetensors")),
               fx("in_target_f32.safetensors"), "I64 is expected (tensor target)");
    expect_bad("target missing", ARGS("step", "--input", fx("in_no_target.safetensors")),
               fx("in_no_target.safetensors"), "not found (tensor target)");
    expect_bad("one mask only", ARGS("step", "--input", fx("in_one_mask.safetensors")),
               fx("in_one_mask.safetensors"), "(tensor mask.Dropout-19)");
    expect_bad("mask values", ARGS("step", "--input", fx("in_bad_mask.safetensors")), fx("in_bad_mask.safetensors"),
               "(tensor mask.Dropout-16)");
    expect_bad("--batch disagrees with input", ARGS("step", "--batch", "2", "--input", fx("in.safetensors")),
               "--batch 2", fx("in.safetensors"));

    /* flags */
    expect_bad("nonsense flag", ARGS("step", "--frobnicate", "3"), "--frobnicate", "unknown flag");
    expect_bad("bad number", ARGS("step", "--steps", "many"), "--steps", "'many'");
    expect_bad("number with trailing junk", ARGS("step", "--batch", "2x"), "--batch", "'2x'");
    expect_bad("number out of range", ARGS("step", "--batch", "0"), "--batch", "0");
    expect_bad("bad float", ARGS("step", "--lr", "fast"), "--lr", "'fast'");
    expect_bad("negative lr", ARGS("step", "--lr", "-1"), "--lr", "-1");
    expect_bad("flag without value", ARGS("summary", "--batch"), "--batch", "needs a value");
    expect_bad("stray argument", ARGS("step", "extra"), "extra", NULL);
    expect_bad("unknown backend", ARGS("step", "--backend", "cuda"), "--backend cuda", "unknown backend");
    expect_bad("summary bad size", ARGS("summary", "--input", "100"), "Linear-14", "100");

    /* a --dump into a directory that does not exist: refused before any step runs */
    const char *argv[] = {"step", "--in-dim", "1", "--classes", "10", "--batch", "1", "--dump",
                          "/nonexistent-anx-dir/o.safetensors", NULL};
    tu_run r = tu_spawn(&(tu_spawn_opts){0}, argv);
    TU_CHECKF(r.status == 2 && r.err_lines == 1 && strstr(r.err, "--dump /nonexistent-anx-dir/o.safetensors") &&
                  r.out[0] == '\0',
              "dump into a missing directory: status %d, stderr %s", r.status, r.err);
    tu_run_free(&r);

    tu_remove_tree(outdir);
    tu_remove_tree(dir);
    return tu_finish("test_cli_bad_input");
}
