/* The data commands as a user runs them (argv[1] is the anx binary): anx image --dump gives the
 * torchvision tensor of the fixture picture; bad input (corrupt PNG, missing or empty dataset,
 * a corrupt image in the training set) exits 2 with one stderr line naming the culprit and
 * leaves no output file behind. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "anx/backend.h"
#include "anx/data.h"
#include "anx/safetensors.h"
#include "testutil.h"

#define FIX ANX_SOURCE_DIR "/data/fixtures"
#define REF (anx_backend_reference()->name) /* the plain-loop backend: the small runs here need no speed */

static const char *anx;
static char dir[256];

/* Runs `anx args` with stdout+stderr to dir/out.txt; returns the exit status, output in out. */
static int run(const char *args, char *out, size_t cap)
{
    char cmd[2048], path[512];
    snprintf(path, sizeof path, "%s/out.txt", dir);
    snprintf(cmd, sizeof cmd, "'%s' %s > '%s' 2>&1", anx, args, path);
    int st = system(cmd);
    out[0] = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        size_t n = fread(out, 1, cap - 1, f);
        out[n] = 0;
        fclose(f);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void check_image_dump(void)
{
    char args[1024], out[8192], dump[512], err[512];
    snprintf(dump, sizeof dump, "%s/photo.safetensors", dir);
    for (int aa = 0; aa < 2; aa++) {
        snprintf(args, sizeof args, "image %s/png/photo_down.png %s --dump %s", FIX, aa ? "--antialias" : "", dump);
        int rc = run(args, out, sizeof out);
        TU_CHECKF(rc == 0, "anx %s: exit %d: %s", args, rc, out);
        anx_st_file got, want;
        if (anx_st_read(&got, dump, err, sizeof err)) {
            TU_CHECKF(0, "%s", err);
            continue;
        }
        TU_CHECK(anx_st_read(&want, FIX "/expected.safetensors", err, sizeof err) == 0);
        float *g = tu_alloc(3 * 227 * 227, "image"), *w = tu_alloc(3 * 227 * 227, "want");
        const int64_t shape[3] = {3, 227, 227};
        TU_CHECKF(anx_st_get_f32(&got, "image", g, 3 * 227 * 227, shape, 3, err, sizeof err) == 0, "%s", err);
        anx_st_get_f32(&want, aa ? "pipeline.photo_down.aa1" : "pipeline.photo_down.aa0", w, 3 * 227 * 227, shape, 3,
                       err, sizeof err);
        tu_expect_close(g, w, 3 * 227 * 227, 1e-5, 0, aa ? "anx image --antialias" : "anx image"); /* see test_resize.c */
        tu_free(g), tu_free(w);
        anx_st_free(&got), anx_st_free(&want);
        remove(dump);
    }
}

static void expect_usage_error(const char *args, const char *culprit, const char *no_file)
{
    char out[8192];
    int rc = run(args, out, sizeof out);
    int lines = 0;
    for (const char *p = out; *p; p++) lines += *p == '\n';
    TU_CHECKF(rc == 2, "anx %s: exit %d, want 2", args, rc);
    TU_CHECKF(strstr(out, culprit) != NULL, "anx %s: output does not name %s: %s", args, culprit, out);
    TU_CHECKF(lines == 1 || strncmp(args, "train", 5) == 0, "anx %s: %d lines of output, want one", args, lines);
    if (no_file) TU_CHECKF(!exists(no_file), "anx %s left %s behind", args, no_file);
    printf("  anx %.60s -> %s", args, strrchr(out, '\n') && lines > 1 ? strstr(out, "anx ") ? strstr(out, "anx ") : out : out);
}

static void mk(const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    if (mkdir(p, 0777) && errno != EEXIST) perror(p), exit(1);
}

static void put_png(const char *rel, int v)
{
    char p[512], err[512];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    uint16_t s[8 * 8 * 3];
    for (int i = 0; i < 8 * 8 * 3; i++) s[i] = (uint16_t)(v + i) & 255;
    anx_png_spec spec = {.w = 8, .h = 8, .color_type = ANX_PNG_RGB, .bit_depth = 8};
    if (anx_png_write(p, &spec, s, err, sizeof err)) fprintf(stderr, "%s\n", err), exit(1);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_cli_data path/to/anx\n");
        return 2;
    }
    anx = argv[1];
    snprintf(dir, sizeof dir, "%s/test_cli_data.XXXXXX", ANX_BINARY_DIR);
    if (!mkdtemp(dir)) perror(dir), exit(1);
    check_image_dump();

    char args[1024], dump[512];
    snprintf(dump, sizeof dump, "%s/never.safetensors", dir);
    snprintf(args, sizeof args, "image %s/png/bad_truncated.png --dump %s", FIX, dump);
    expect_usage_error(args, "bad_truncated.png", dump);
    snprintf(args, sizeof args, "image %s/png/bad_crc.png --dump %s", FIX, dump);
    expect_usage_error(args, "bad_crc.png", dump);
    expect_usage_error("image --size 0 x.png", "--size", NULL);
    snprintf(args, sizeof args, "flowers --out %s/f --per-class 0", dir);
    expect_usage_error(args, "--per-class", NULL);

    /* datasets: missing, without val, with an empty class, with a corrupt image */
    snprintf(args, sizeof args, "train --data %s/nothing --backend %s", dir, REF);
    expect_usage_error(args, "nothing/train", NULL);
    mk("ds"), mk("ds/train"), mk("ds/train/a"), mk("ds/train/b");
    put_png("ds/train/a/1.png", 10);
    put_png("ds/train/b/1.png", 90);
    snprintf(args, sizeof args, "train --data %s/ds --backend %s", dir, REF);
    expect_usage_error(args, "ds/val", NULL);
    mk("ds/val"), mk("ds/val/a"), mk("ds/val/b");
    put_png("ds/val/a/1.png", 20);
    snprintf(args, sizeof args, "train --data %s/ds --backend %s", dir, REF);
    expect_usage_error(args, "ds/val/b", NULL);
    put_png("ds/val/b/1.png", 80);
    char bad[512];
    snprintf(bad, sizeof bad, "%s/ds/train/b/0.png", dir);
    FILE *f = fopen(bad, "wb");
    fputs("\x89PNG\r\n\x1a\nnot really", f);
    fclose(f);
    snprintf(dump, sizeof dump, "%s/ckpt.safetensors", dir);
    snprintf(args, sizeof args, "train --data %s/ds --backend %s --batch 4 --epochs 1 --checkpoint %s", dir, REF, dump);
    expect_usage_error(args, "ds/train/b/0.png", dump);
    snprintf(args, sizeof args, "train --data %s/ds --backend nosuch", dir);
    expect_usage_error(args, "nosuch", NULL);
    snprintf(args, sizeof args, "train --data %s/ds --lr -1", dir);
    expect_usage_error(args, "--lr", NULL);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (tu_failed == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return tu_finish("test_cli_data");
}
