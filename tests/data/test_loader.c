/* ImageFolder + DataLoader on a small tree whose every picture encodes its id in its colour:
 * class order, file order (sorted, recursive), non-PNG files skipped, empty class / empty root /
 * missing root refused with the name, batches with the last partial one kept, shuffle as a
 * permutation that is a pure function of (seed, epoch), corrupt files stopping the loader with
 * their path or skipped and counted with skip_bad. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "anx/data.h"
#include "testutil.h"

static char root[256];

static void put_png(const char *rel, int id)
{
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    uint16_t s[4 * 4 * 3];
    for (int i = 0; i < 48; i++) s[i] = (uint16_t)(i % 3 == 0 ? id * 10 : 100 + i % 3);
    anx_png_spec spec = {.w = 4, .h = 4, .color_type = ANX_PNG_RGB, .bit_depth = 8};
    if (anx_png_write(path, &spec, s, err, sizeof err)) fprintf(stderr, "setup: %s\n", err), exit(1);
}

static void put_file(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *f = fopen(path, "wb");
    if (!f) perror(path), exit(1);
    fputs(text, f);
    fclose(f);
}

static void mk(const char *rel)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    if (mkdir(path, 0777) && errno != EEXIST) perror(path), exit(1);
}

/* ids of one epoch through the loader, -1 terminated; returns the number of batches */
static int run_epoch(anx_loader *l, int epoch, int batch, int *ids, int *labels, int *counts, char *err)
{
    float *x = malloc(sizeof(float) * batch * 3 * 16);
    int64_t y[8];
    int nb = 0, n = 0, cnt, rc;
    TU_CHECK(anx_loader_start_epoch(l, epoch, err, 512) == 0);
    while ((rc = anx_loader_next(l, x, y, &cnt, err, 512)) == 1) {
        for (int i = 0; i < cnt; i++) {
            ids[n] = (int)(x[i * 48] * 255.0f / 10.0f + 0.5f); /* red / 10 */
            labels[n++] = (int)y[i];
        }
        counts[nb++] = cnt;
    }
    ids[n] = -1;
    free(x);
    return rc == 2 ? -nb - 1 : nb;
}

static void check_folder(void)
{
    mk("a_cls"), mk("b_cls"), mk("b_cls/sub");
    put_png("a_cls/2.PNG", 2);
    put_png("a_cls/10.png", 1); /* "10.png" < "2.PNG" in byte order */
    put_png("b_cls/z.png", 4);
    put_png("b_cls/a.png", 3);
    put_png("b_cls/sub/m.png", 5);
    put_file("b_cls/notes.txt", "not an image");
    anx_dataset d;
    char err[512];
    TU_CHECKF(anx_dataset_open(&d, root, err, sizeof err) == 0, "%s", err);
    TU_CHECK(d.n_classes == 2 && strcmp(d.classes[0], "a_cls") == 0 && strcmp(d.classes[1], "b_cls") == 0);
    TU_CHECKF(d.n == 5 && d.skipped_files == 1, "n %d skipped %d", d.n, d.skipped_files);
    const int want_labels[5] = {0, 0, 1, 1, 1};
    for (int i = 0; i < d.n && i < 5; i++) TU_CHECKF(d.labels[i] == want_labels[i], "label %d of %s", d.labels[i], d.paths[i]);
    if (d.n == 5) TU_CHECKF(strstr(d.paths[4], "b_cls/sub/m.png") != NULL, "last file %s", d.paths[4]);

    anx_loader_config cfg = {.batch = 2, .shuffle = 0, .seed = 5, .size = 4};
    anx_loader *l = anx_loader_create(&d, &cfg, err, sizeof err);
    TU_CHECKF(l != NULL, "%s", err);
    int ids[16], labels[16], counts[8];
    int nb = run_epoch(l, 0, 2, ids, labels, counts, err);
    TU_CHECKF(nb == 3 && counts[0] == 2 && counts[1] == 2 && counts[2] == 1, "batches %d (last partial kept)", nb);
    for (int i = 0; i < 5; i++) TU_CHECKF(ids[i] == i + 1 && labels[i] == want_labels[i], "item %d: id %d label %d", i, ids[i], labels[i]);
    /* the end repeats */
    float x[2 * 48];
    int64_t y[2];
    int cnt;
    TU_CHECK(anx_loader_next(l, x, y, &cnt, err, sizeof err) == 0 && cnt == 0);
    anx_loader_destroy(l);

    /* shuffle: permutations, a function of (seed, epoch) only */
    cfg.shuffle = 1;
    anx_loader *a = anx_loader_create(&d, &cfg, err, sizeof err), *b = anx_loader_create(&d, &cfg, err, sizeof err);
    int first[16], differs = 0;
    for (int ep = 0; ep < 6; ep++) {
        int ia[16], ib[16], la[16], lb[16], seen[6] = {0};
        run_epoch(a, ep, 2, ia, la, counts, err);
        run_epoch(b, 5 - ep, 2, ib, lb, counts, err); /* b walks the epochs backwards */
        run_epoch(b, ep, 2, ib, lb, counts, err);
        for (int i = 0; i < 5; i++) {
            if (ia[i] >= 1 && ia[i] <= 5) seen[ia[i]]++;
            TU_CHECKF(ia[i] == ib[i] && la[i] == lb[i], "epoch %d: order depends on more than (seed, epoch)", ep);
            TU_CHECKF(la[i] == (ia[i] >= 3), "epoch %d: label %d for id %d", ep, la[i], ia[i]);
        }
        for (int k = 1; k <= 5; k++) TU_CHECKF(seen[k] == 1, "epoch %d: id %d seen %d times", ep, k, seen[k]);
        if (ep == 0) memcpy(first, ia, sizeof first);
        else differs += memcmp(first, ia, 5 * sizeof(int)) != 0;
    }
    TU_CHECKF(differs > 0, "shuffle gives the same order in every epoch");
    anx_loader_destroy(a);
    anx_loader_destroy(b);

    /* a corrupt file: an error naming it, or skipped and counted */
    put_file("b_cls/b_bad.png", "\x89PNG\r\n\x1a\n truncated");
    anx_dataset_free(&d);
    TU_CHECK(anx_dataset_open(&d, root, err, sizeof err) == 0 && d.n == 6);
    cfg.shuffle = 0;
    l = anx_loader_create(&d, &cfg, err, sizeof err);
    nb = run_epoch(l, 0, 2, ids, labels, counts, err);
    TU_CHECKF(nb < 0 && strstr(err, "b_cls/b_bad.png") != NULL, "bad file: batches %d, err '%s'", nb, err);
    printf("  corrupt file -> %s\n", err);
    anx_loader_destroy(l);
    cfg.skip_bad = 1;
    l = anx_loader_create(&d, &cfg, err, sizeof err);
    nb = run_epoch(l, 0, 2, ids, labels, counts, err);
    TU_CHECKF(nb == 3 && anx_loader_bad_count(l) == 1, "skip_bad: %d batches, %d bad", nb, anx_loader_bad_count(l));
    for (int i = 0; i < 5; i++) TU_CHECKF(ids[i] == i + 1, "skip_bad: item %d is id %d", i, ids[i]);
    anx_loader_destroy(l);
    anx_dataset_free(&d);
}

static void check_refusals(void)
{
    char err[512], path[512];
    anx_dataset d;
    mk("empty_root");
    snprintf(path, sizeof path, "%s/empty_root", root);
    TU_CHECK(anx_dataset_open(&d, path, err, sizeof err) == 2 && strstr(err, path) == err);
    printf("  %s\n", err);
    snprintf(path, sizeof path, "%s/missing", root);
    TU_CHECK(anx_dataset_open(&d, path, err, sizeof err) == 2 && strstr(err, path) == err);
    mk("r2"), mk("r2/x"), mk("r2/y");
    put_png("r2/y/a.png", 1);
    snprintf(path, sizeof path, "%s/r2", root);
    TU_CHECK(anx_dataset_open(&d, path, err, sizeof err) == 2 && strstr(err, "r2/x") != NULL);
    printf("  %s\n", err);
    put_file("r2/x/readme.txt", "only text");
    TU_CHECK(anx_dataset_open(&d, path, err, sizeof err) == 2 && strstr(err, "r2/x") != NULL);
    put_png("r2/x/b.png", 2);
    TU_CHECKF(anx_dataset_open(&d, path, err, sizeof err) == 0 && d.n == 2, "%s", err);
    anx_dataset_free(&d);
}

int main(void)
{
    snprintf(root, sizeof root, "%s/test_loader.XXXXXX", ANX_BINARY_DIR);
    if (!mkdtemp(root)) perror(root), exit(1);
    printf("tree: %s\n", root);
    check_folder();
    check_refusals();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (tu_failed == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    return tu_finish("test_loader");
}
