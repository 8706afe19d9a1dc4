/* test_bad_input_all: every command refuses bad input the same way (DESIGN.md 4): exit status
 * exactly 2, exactly one line on stderr that starts "anx <cmd>: " and names the culprit (flag,
 * file or tensor), nothing on stdout, and nothing written where the command would write.
 *
 * Commands: summary, step, verify, train, flowers, image, and anx-bench when it is built.
 * Cases per command: unknown flag, flag without its value, extra positional argument, wrong
 * type, zero and negative counts, absurd sizes, and for `anx step` NaN/Inf in the input and in
 * the weights (defined: refused from the file before the network is built, naming the file, the
 * tensor and the element; a non-finite value is bad input, not a training failure).
 *
 * Absurd sizes, defined: a size past a flag's range is a flag error; a size in range whose
 * network cannot fit in this machine's RAM is refused up front by `anx step` (Linux overcommits,
 * so malloc would succeed and the OOM killer strike later); an allocation that fails anyway
 * (shown under RLIMIT_AS) is one line "out of memory ...", exit 2.  RLIMIT_AS cases are skipped
 * under ASan, whose shadow memory does not fit under such a limit.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "anx/model.h"
#include "anx/safetensors.h"
#include "spawn.h"
#include "testutil.h"

static char dir[128], outdir[192];
static int nfixtures; /* entries in dir besides outdir */

static const char *fx(const char *name)
{
    static char buf[16][256];
    static int k;
    k = (k + 1) % 16;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static const char *outp(const char *name)
{
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", outdir, name);
    return buf[k];
}

/* ---- fixtures ---- */

static void commit(anx_st_writer *w, const char *name)
{
    char err[512];
    if (anx_st_writer_commit(w, fx(name), err, sizeof err)) {
        fprintf(stderr, "fixture %s: %s\n", name, err);
        exit(1);
    }
    anx_st_writer_free(w);
    nfixtures++;
}

/* input [1, 1, 227, 227] with bad = NaN/Inf at element at (or all finite when at < 0), target [1] */
static void write_input(const char *name, float bad, long at)
{
    const size_t n = 227 * 227;
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (float)(i % 255) / 255.0f;
    if (at >= 0) x[at] = bad;
    const int64_t shape[4] = {1, 1, 227, 227}, tshape[1] = {1}, target[1] = {3};
    anx_st_writer *w = anx_st_writer_new();
    anx_st_writer_add(w, "input", ANX_DTYPE_F32, shape, 4, x);
    anx_st_writer_add(w, "target", ANX_DTYPE_I64, tshape, 1, target);
    commit(w, name);
    free(x);
}

/* Every parameter of Alexnet(1, 10), all zero (finite): ~230 MB, the smallest complete set. */
static void write_weights(const char *name)
{
    anx_model m;
    char err[256];
    if (anx_model_init(&m, &(anx_model_config){1, 10, 1, 227}, err, sizeof err)) {
        fprintf(stderr, "model: %s\n", err);
        exit(1);
    }
    size_t max = 0;
    for (int p = 0; p < ANX_NUM_PARAMS; p++) max = m.params[p].count > max ? m.params[p].count : max;
    float *zero = calloc(max, sizeof *zero);
    anx_st_writer *w = anx_st_writer_new();
    for (int p = 0; p < ANX_NUM_PARAMS; p++)
        anx_st_writer_add(w, m.params[p].name, ANX_DTYPE_F32, m.params[p].shape, m.params[p].ndim, zero);
    commit(w, name);
    free(zero);
}

/* Overwrites element `at` of tensor `tensor` in file `name` with v (F32). */
static void patch_f32(const char *name, const char *tensor, size_t at, float v)
{
    anx_st_file f;
    char err[512];
    if (anx_st_read(&f, fx(name), err, sizeof err)) {
        fprintf(stderr, "patch: %s\n", err);
        exit(1);
    }
    const anx_st_tensor *t = anx_st_find(&f, tensor);
    long off = (long)((const unsigned char *)t->data - f.buf) + (long)(4 * at);
    anx_st_free(&f);
    FILE *fp = fopen(fx(name), "r+b");
    if (!fp || fseek(fp, off, SEEK_SET) || fwrite(&v, 4, 1, fp) != 1 || fclose(fp)) {
        fprintf(stderr, "patch %s failed\n", name);
        exit(1);
    }
}

static void write_text(const char *name, const char *text)
{
    FILE *f = fopen(fx(name), "w");
    fputs(text, f);
    fclose(f);
    nfixtures++;
}

/* ---- the check ---- */

/* Where each command writes: prepended to its arguments so that "nothing written" can be checked
 * (before the case's own arguments, so a case can end with a flag that lacks its value). */
static int writes_of(const char *cmd, const char **argv)
{
    int n = 0;
    if (!strcmp(cmd, "step")) argv[n++] = "--dump", argv[n++] = outp("o.safetensors");
    if (!strcmp(cmd, "train")) {
        argv[n++] = "--metrics", argv[n++] = outp("m.jsonl");
        argv[n++] = "--checkpoint", argv[n++] = outp("c.safetensors");
    }
    if (!strcmp(cmd, "verify")) argv[n++] = "--quiet", argv[n++] = "--json", argv[n++] = outp("v.json");
    if (!strcmp(cmd, "image")) argv[n++] = "--dump", argv[n++] = outp("i.safetensors");
    return n;
}

static void expect_bad_with(const tu_spawn_opts *o, const char *what, const char *const *args, const char *must1,
                            const char *must2)
{
    const char *argv[48];
    int n = 0;
    if (!o->bin) argv[n++] = args[0], n += writes_of(args[0], argv + n); /* anx-bench: no command */
    for (int i = 1; args[i]; i++) argv[n++] = args[i];
    argv[n] = NULL;
    tu_run r = tu_spawn(o, argv);
    const char *cmd = o->bin ? "anx-bench" : args[0];
    char prefix[64];
    snprintf(prefix, sizeof prefix, o->bin ? "%s" : "anx %s: ", cmd);
    TU_CHECKF(r.status == 2, "%s %s: exit status %d (signal %d), want 2 (stderr: %s)", cmd, what, r.status, r.signal,
              r.err);
    TU_CHECKF(r.err_lines == 1 && r.err[strlen(r.err) - 1] == '\n', "%s %s: want exactly one line on stderr, got: %s",
              cmd, what, r.err);
    TU_CHECKF(strstr(r.err, must1) && (!must2 || strstr(r.err, must2)), "%s %s: stderr must name '%s' and '%s', got: %s",
              cmd, what, must1, must2 ? must2 : "", r.err);
    TU_CHECKF(strncmp(r.err, prefix, strlen(prefix)) == 0, "%s %s: message does not start with '%s': %s", cmd, what,
              prefix, r.err);
    TU_CHECKF(r.out[0] == '\0', "%s %s: printed on stdout: %s", cmd, what, r.out);
    char names[512];
    TU_CHECKF(tu_list_dir(outdir, names, sizeof names) == 0, "%s %s: left behind in the output directory: %s", cmd, what,
              names);
    TU_CHECKF(tu_list_dir(dir, names, sizeof names) == nfixtures + 1, "%s %s: files appeared next to the inputs: %s", cmd,
              what, names);
    tu_run_free(&r);
}

static void expect_bad(const char *what, const char *const *args, const char *must1, const char *must2)
{
    expect_bad_with(&(tu_spawn_opts){0}, what, args, must1, must2);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- per command ---- */

static void cases_summary(void)
{
    expect_bad("unknown flag", ARGS("summary", "--frobnicate"), "'--frobnicate'", "unknown flag");
    expect_bad("flag without value", ARGS("summary", "--classes"), "--classes", "needs a value");
    expect_bad("extra argument", ARGS("summary", "extra"), "'extra'", NULL);
    expect_bad("wrong type", ARGS("summary", "--batch", "two"), "--batch", "'two'");
    expect_bad("zero batch", ARGS("summary", "--batch", "0"), "--batch", "0");
    expect_bad("negative batch", ARGS("summary", "--batch", "-1"), "--batch", "-1");
    expect_bad("absurd batch", ARGS("summary", "--batch", "100000000"), "--batch", "100000000");
    expect_bad("absurd classes", ARGS("summary", "--classes", "99999999999999999999"), "--classes", NULL);
    expect_bad("zero in-dim", ARGS("summary", "--in-dim", "0"), "--in-dim", "0");
    expect_bad("input size the model refuses", ARGS("summary", "--input", "100"), "Linear-14", "100");
}

static void cases_step(void)
{
    expect_bad("unknown flag", ARGS("step", "--frobnicate", "1"), "'--frobnicate'", "unknown flag");
    expect_bad("flag without value", ARGS("step", "--backend"), "--backend", "needs a value");
    expect_bad("extra argument", ARGS("step", "--backend", TU_REF, "extra"), "'extra'", NULL);
    expect_bad("wrong type", ARGS("step", "--batch", "two"), "--batch", "'two'");
    expect_bad("float for an int", ARGS("step", "--steps", "1.5"), "--steps", "'1.5'");
    expect_bad("zero batch", ARGS("step", "--batch", "0"), "--batch", "0");
    expect_bad("negative batch", ARGS("step", "--batch", "-2"), "--batch", "-2");
    expect_bad("zero steps", ARGS("step", "--steps", "0"), "--steps", "0");
    expect_bad("negative steps", ARGS("step", "--steps", "-3"), "--steps", "-3");
    expect_bad("NaN lr", ARGS("step", "--lr", "nan"), "--lr", NULL);
    expect_bad("absurd batch past the flag range", ARGS("step", "--batch", "100000000"), "--batch", "100000000");
    /* in range, but ~1 TB of activations: refused before any allocation */
    expect_bad("absurd batch in range", ARGS("step", "--batch", "100000"), "--batch 100000", "GiB of RAM");
    /* 4096 x 2^20 fc.6 weights, 4 copies: 64 GiB of parameters */
    expect_bad("absurd classes", ARGS("step", "--classes", "1048576"), "--classes", "GiB of RAM");
    expect_bad("unknown backend", ARGS("step", "--backend", "cuda"), "--backend cuda", NULL);

    expect_bad("NaN in the input", ARGS("step", "--classes", "10", "--input", fx("in_nan.safetensors")),
               fx("in_nan.safetensors"), "element 1234 is not finite (tensor input)");
    expect_bad("-Inf in the input", ARGS("step", "--classes", "10", "--input", fx("in_inf.safetensors")),
               fx("in_inf.safetensors"), "element 0 is not finite (tensor input)");

    write_weights("w.safetensors");
    patch_f32("w.safetensors", "fc.0.weight", 777, NAN);
    expect_bad("NaN in the weights", ARGS("step", "--weights", fx("w.safetensors")), fx("w.safetensors"),
               "element 777 is nan, not finite as float32 (tensor fc.0.weight)");
    patch_f32("w.safetensors", "fc.0.weight", 777, 0.0f);
    patch_f32("w.safetensors", "conv.8.bias", 5, INFINITY);
    expect_bad("Inf in the weights", ARGS("step", "--weights", fx("w.safetensors"), "--input", fx("in_nan.safetensors")),
               fx("w.safetensors"), "element 5 is inf, not finite as float32 (tensor conv.8.bias)");

    /* an allocation that fails is reported: Alexnet(3, 1000) needs ~1 GB of parameters alone */
    if (tu_sanitized()) {
        printf("skipped: step under RLIMIT_AS (ASan's shadow memory does not fit under the limit)\n");
    } else {
        expect_bad_with(&(tu_spawn_opts){.as_bytes = 768LL << 20}, "malloc fails under RLIMIT_AS 768 MiB",
                        ARGS("step", "--batch", "1", "--backend", TU_REF), "out of memory", "Alexnet(3, 1000)");
    }
}

static void cases_verify(void)
{
    expect_bad("unknown flag", ARGS("verify", "--frobnicate"), "'--frobnicate'", "unknown flag");
    expect_bad("flag without value", ARGS("verify", "--golden"), "--golden", "needs a value");
    expect_bad("extra argument", ARGS("verify", "extra"), "'extra'", NULL);
    expect_bad("wrong type", ARGS("verify", "--threads", "two"), "--threads", "'two'");
    expect_bad("negative threads", ARGS("verify", "--threads", "-1"), "--threads", "-1");
    expect_bad("absurd threads", ARGS("verify", "--threads", "100000000"), "--threads", "100000000");
    expect_bad("missing golden file", ARGS("verify", "--golden", fx("nope.safetensors")), fx("nope.safetensors"),
               NULL);
    expect_bad("golden that is not a golden", ARGS("verify", "--golden", fx("in_nan.safetensors")),
               fx("in_nan.safetensors"), NULL);
    expect_bad("golden that is text", ARGS("verify", "--golden", fx("text.txt")), fx("text.txt"), NULL);
    expect_bad("unknown backend", ARGS("verify", "--backend", "cuda", "--golden", fx("in_nan.safetensors")), "cuda",
               NULL);
}

static void cases_train(void)
{
    expect_bad("unknown flag", ARGS("train", "--frobnicate"), "'--frobnicate'", "unknown flag");
    expect_bad("flag without value", ARGS("train", "--data"), "--data", "needs a value");
    expect_bad("extra argument", ARGS("train", "--data", fx("data"), "extra"), "'extra'", NULL);
    expect_bad("no --data", ARGS("train", "--epochs", "1"), "--data", NULL);
    expect_bad("wrong type", ARGS("train", "--data", fx("data"), "--batch", "two"), "--batch", "'two'");
    expect_bad("zero batch", ARGS("train", "--data", fx("data"), "--batch", "0"), "--batch", "0");
    expect_bad("negative batch", ARGS("train", "--data", fx("data"), "--batch", "-4"), "--batch", "-4");
    expect_bad("zero epochs", ARGS("train", "--data", fx("data"), "--epochs", "0"), "--epochs", "0");
    expect_bad("negative epochs", ARGS("train", "--data", fx("data"), "--epochs", "-1"), "--epochs", "-1");
    expect_bad("absurd batch", ARGS("train", "--data", fx("data"), "--batch", "100000000"), "--batch", "100000000");
    expect_bad("bad size", ARGS("train", "--data", fx("data"), "--size", "100"), "--size", "100");
    expect_bad("unknown backend", ARGS("train", "--data", fx("data"), "--backend", "cuda"), "cuda", NULL);
    expect_bad("missing data folder", ARGS("train", "--data", fx("nope")), fx("nope"), NULL);
    expect_bad("missing resume file", ARGS("train", "--data", fx("data"), "--resume", fx("nope.safetensors")),
               fx("nope.safetensors"), NULL);
    /* --batch 4096 is in range (~50 GB of activations): under RLIMIT_AS the allocation fails
     * and is reported.  Without the limit anx train has no up-front size check (open, see
     * docs/hardening.md), so this is not tried unlimited on a shared machine. */
    if (tu_sanitized())
        printf("skipped: train under RLIMIT_AS (ASan's shadow memory does not fit under the limit)\n");
    else
        expect_bad_with(&(tu_spawn_opts){.as_bytes = 4000LL << 20}, "malloc fails under RLIMIT_AS 4000 MiB",
                        ARGS("train", "--data", fx("data"), "--batch", "4096", "--epochs", "1"), "out of memory",
                        "batch 4096");
    expect_bad("resume from a file that is not a checkpoint",
               ARGS("train", "--data", fx("data"), "--resume", fx("in_nan.safetensors")), fx("in_nan.safetensors"),
               NULL);
}

static void cases_flowers(void)
{
    expect_bad("unknown flag", ARGS("flowers", "--frobnicate"), "'--frobnicate'", "unknown flag");
    expect_bad("flag without value", ARGS("flowers", "--out"), "--out", "needs a value");
    expect_bad("extra argument", ARGS("flowers", "--out", outp("f"), "extra"), "'extra'", NULL);
    expect_bad("no --out", ARGS("flowers", "--per-class", "1"), "--out", NULL);
    expect_bad("wrong type", ARGS("flowers", "--out", outp("f"), "--per-class", "two"), "--per-class", "'two'");
    expect_bad("zero per class", ARGS("flowers", "--out", outp("f"), "--per-class", "0"), "--per-class", "0");
    expect_bad("negative per class", ARGS("flowers", "--out", outp("f"), "--per-class", "-1"), "--per-class", "-1");
    expect_bad("absurd per class", ARGS("flowers", "--out", outp("f"), "--per-class", "100000000"), "--per-class",
               "100000000");
    /* a negative --seed is taken as its 64-bit pattern (any seed names a set), so not refused */
    expect_bad("seed not a number", ARGS("flowers", "--out", outp("f"), "--seed", "0x1g"), "--seed", "'0x1g'");
    expect_bad("--out under a regular file", ARGS("flowers", "--out", fx("text.txt/f")), fx("text.txt"), NULL);
}

static void cases_image(void)
{
    const char *png = ANX_SOURCE_DIR "/tests/fuzz/corpus/png/seed_rgb8";
    expect_bad("unknown flag", ARGS("image", png, "--frobnicate"), "'--frobnicate'", "unknown flag");
    expect_bad("flag without value", ARGS("image", png, "--size"), "--size", "needs a value");
    expect_bad("extra argument", ARGS("image", png, "extra.png"), "'extra.png'", NULL);
    expect_bad("no FILE", ARGS("image", "--size", "64"), "FILE", NULL);
    expect_bad("wrong type", ARGS("image", png, "--size", "two"), "--size", "'two'");
    expect_bad("zero size", ARGS("image", png, "--size", "0"), "--size", "0");
    expect_bad("negative size", ARGS("image", png, "--size", "-227"), "--size", "-227");
    expect_bad("absurd size", ARGS("image", png, "--size", "100000000"), "--size", "100000000");
    expect_bad("missing FILE", ARGS("image", fx("nope.png")), fx("nope.png"), NULL);
    expect_bad("FILE not a PNG", ARGS("image", fx("text.txt")), fx("text.txt"), NULL);
    expect_bad("FILE is a directory", ARGS("image", dir), dir, NULL);
}

static void cases_bench(void)
{
    const char *bench = ANX_BINARY_DIR "/anx-bench";
    if (access(bench, X_OK) != 0) {
        printf("skipped: anx-bench (not built here)\n");
        return;
    }
    tu_spawn_opts o = {.bin = bench};
    expect_bad_with(&o, "unknown flag", ARGS("-", "--frobnicate"), "--frobnicate", NULL);
    expect_bad_with(&o, "extra argument", ARGS("-", "extra"), "extra", NULL);
}

int main(int argc, char **argv)
{
    snprintf(dir, sizeof dir, "/tmp/anx_hard_bad_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(outdir, sizeof outdir, "%s/out", dir);
    if (mkdir(outdir, 0755)) {
        perror(outdir);
        return 1;
    }
    write_text("text.txt", "not a PNG, not safetensors, not a directory\n");
    write_input("in_nan.safetensors", NAN, 1234);
    write_input("in_inf.safetensors", -INFINITY, 0);
    /* a tiny image folder for train: 5 classes x (1 train + 1 val) */
    const char *flowers[] = {"flowers", "--out", fx("data"), "--per-class", "1", "--val", "1", NULL};
    tu_run r = tu_spawn(&(tu_spawn_opts){0}, flowers);
    if (r.status != 0) {
        fprintf(stderr, "anx flowers failed: %s\n", r.err);
        return 1;
    }
    tu_run_free(&r);
    nfixtures++;

    const char *only = argc > 1 ? argv[1] : NULL; /* one command, for debugging */
    if (!only || !strcmp(only, "summary")) cases_summary();
    if (!only || !strcmp(only, "step")) cases_step();
    if (!only || !strcmp(only, "verify")) cases_verify();
    if (!only || !strcmp(only, "train")) cases_train();
    if (!only || !strcmp(only, "flowers")) cases_flowers();
    if (!only || !strcmp(only, "image")) cases_image();
    if (!only || !strcmp(only, "bench")) cases_bench();

    tu_remove_tree(dir);
    return tu_finish("test_bad_input_all");
}
