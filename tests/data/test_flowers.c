/* Synthetic flowers: a pure function of the seed (same seed, same bytes; another seed, other
 * pictures), every PNG kind the mix promises shows up, and a written set is an ImageFolder with
 * the five classes in order whose every file decodes. */
#include <stdlib.h>
#include <string.h>

#include "anx/data.h"
#include "testutil.h"

static int same_image(const anx_image *a, const anx_image *b)
{
    return a->w == b->w && a->h == b->h && memcmp(a->rgb, b->rgb, (size_t)a->w * a->h * 3) == 0;
}

static void check_draw(void)
{
    anx_image a, b, c, d;
    anx_png_spec ka, kb, kc, kd;
    TU_CHECK(anx_flower_draw(&a, &ka, 1, 0, 2, 7) == 0);
    TU_CHECK(anx_flower_draw(&b, &kb, 1, 0, 2, 7) == 0);
    TU_CHECK(anx_flower_draw(&c, &kc, 2, 0, 2, 7) == 0);
    TU_CHECK(anx_flower_draw(&d, &kd, 1, 1, 2, 7) == 0);
    TU_CHECKF(same_image(&a, &b) && memcmp(&ka, &kb, sizeof ka) == 0, "same (seed, split, class, index), other picture");
    TU_CHECKF(!same_image(&a, &c), "another seed gives the same picture");
    TU_CHECKF(!same_image(&a, &d), "train and val share a picture");
    TU_CHECK(a.w >= 170 && a.w <= 300 && a.h >= 170 && a.h <= 300);
    anx_image_free(&a), anx_image_free(&b), anx_image_free(&c), anx_image_free(&d);

    /* the kinds of the mix over 400 pictures */
    int seen[8] = {0};
    for (int i = 0; i < 400; i++) {
        anx_png_spec k;
        anx_image img;
        TU_CHECK(anx_flower_draw(&img, &k, 1, 0, i % 5, i / 5) == 0);
        anx_image_free(&img);
        int slot = k.color_type == ANX_PNG_PALETTE ? (k.ntrns ? 1 : 0)
                   : k.color_type == ANX_PNG_RGBA  ? 2
                   : k.color_type == ANX_PNG_GRAY  ? 3
                   : k.color_type == ANX_PNG_GRAY_ALPHA ? 4
                   : k.bit_depth == 16 ? 5 : k.interlace ? 6 : 7;
        seen[slot]++;
    }
    const char *names[8] = {"palette", "palette+tRNS", "RGBA", "gray", "gray+alpha", "RGB16", "RGB interlaced", "RGB8"};
    for (int s = 0; s < 8; s++) {
        printf("  %-15s %3d of 400\n", names[s], seen[s]);
        TU_CHECKF(seen[s] > 0, "the flower mix never writes %s", names[s]);
    }
}

static void slurp(const char *path, unsigned char **buf, long *n)
{
    FILE *f = fopen(path, "rb");
    *buf = NULL, *n = -1;
    if (!f) return;
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *buf = malloc((size_t)*n + 1);
    if (fread(*buf, 1, (size_t)*n, f) != (size_t)*n) *n = -2;
    fclose(f);
}

static void check_set(void)
{
    char root[256], root2[256], err[512];
    snprintf(root, sizeof root, "%s/test_flowers.XXXXXX", ANX_BINARY_DIR);
    snprintf(root2, sizeof root2, "%s/test_flowers.XXXXXX", ANX_BINARY_DIR);
    if (!mkdtemp(root) || !mkdtemp(root2)) perror("mkdtemp"), exit(1);
    TU_CHECKF(anx_flowers_write(root, 3, 2, 9, err, sizeof err) == 0, "%s", err);
    TU_CHECKF(anx_flowers_write(root2, 3, 2, 9, err, sizeof err) == 0, "%s", err);
    const char *splits[2] = {"train", "val"};
    for (int sp = 0; sp < 2; sp++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", root, splits[sp]);
        anx_dataset d;
        TU_CHECKF(anx_dataset_open(&d, dir, err, sizeof err) == 0, "%s", err);
        TU_CHECK(d.n_classes == ANX_FLOWER_CLASSES && d.n == ANX_FLOWER_CLASSES * (sp ? 2 : 3));
        for (int c = 0; c < d.n_classes && c < ANX_FLOWER_CLASSES; c++)
            TU_CHECKF(strcmp(d.classes[c], anx_flower_classes[c]) == 0, "class %d is %s", c, d.classes[c]);
        float *x = malloc(sizeof(float) * 3 * 227 * 227);
        for (int i = 0; i < d.n; i++) {
            TU_CHECKF(anx_image_load(x, d.paths[i], 227, 0, err, sizeof err) == 0, "%s", err);
            /* byte-identical to the same file of the second run */
            char other[600];
            snprintf(other, sizeof other, "%s%s", root2, d.paths[i] + strlen(root));
            unsigned char *p, *q;
            long np, nq;
            slurp(d.paths[i], &p, &np);
            slurp(other, &q, &nq);
            TU_CHECKF(np > 0 && np == nq && memcmp(p, q, (size_t)np) == 0, "%s differs between two runs", d.paths[i]);
            free(p), free(q);
        }
        free(x);
        anx_dataset_free(&d);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", root, root2);
    if (tu_failed == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
}

int main(void)
{
    check_draw();
    check_set();
    return tu_finish("test_flowers");
}
