/* PNG decoding: every kind of data/fixtures/png against PIL's convert('RGB') + ToTensor
 * (data/fixtures/expected.safetensors, written by gen_fixtures.py with its own PNG encoder),
 * corrupt files refused with their path, and the writer round-tripping every kind. */
#include <stdlib.h>
#include <string.h>

#include "anx/data.h"
#include "anx/safetensors.h"
#include "testutil.h"

#define FIX ANX_SOURCE_DIR "/data/fixtures"

static const char *const kinds[] = {
    "gray1", "gray2", "gray4", "gray8", "gray16", "gray8_trns", "graya8", "graya16", "pal1", "pal2",
    "pal4", "pal8", "pal8_trns", "rgb8", "rgb16", "rgb8_trns", "rgba8", "rgba16", "rgb8_adam7",
    "gray2_adam7", "pal4_adam7", "rgba16_adam7", "gray8_1x1_adam7", "photo_down", "photo_up"};

static void check_kind(const anx_st_file *exp, const char *kind)
{
    char path[512], key[64], err[512];
    snprintf(path, sizeof path, FIX "/png/%s.png", kind);
    snprintf(key, sizeof key, "decode.%s", kind);
    const anx_st_tensor *t = anx_st_find(exp, key);
    if (strncmp(kind, "photo", 5) == 0) { /* pipeline pictures: only check that they decode */
        anx_image img;
        TU_CHECKF(anx_png_read(&img, path, err, sizeof err) == 0, "%s: %s", kind, err);
        anx_image_free(&img);
        return;
    }
    TU_CHECKF(t && t->ndim == 3 && t->shape[0] == 3, "%s: no expectation %s", kind, key);
    if (!t) return;
    anx_image img;
    int rc = anx_png_read(&img, path, err, sizeof err);
    TU_CHECKF(rc == 0, "%s: %s", kind, err);
    if (rc) return;
    TU_CHECKF(img.h == t->shape[1] && img.w == t->shape[2], "%s: size %dx%d, PIL says %lldx%lld", kind, img.w,
              img.h, (long long)t->shape[2], (long long)t->shape[1]);
    if (img.h == t->shape[1] && img.w == t->shape[2]) {
        float *got = tu_alloc(t->count, kind), *want = tu_alloc(t->count, "want");
        anx_image_to_tensor(got, &img);
        anx_st_get_f32(exp, key, want, t->count, t->shape, 3, err, sizeof err);
        tu_expect_bitwise(got, want, t->count, kind); /* u8 / 255 either way: exact */
        tu_free(got);
        tu_free(want);
    }
    anx_image_free(&img);
}

static void check_bad(const char *name)
{
    char path[512], err[512] = "";
    snprintf(path, sizeof path, FIX "/png/%s.png", name);
    anx_image img = {.w = 7, .h = 7, .rgb = (unsigned char *)1};
    int rc = anx_png_read(&img, path, err, sizeof err);
    TU_CHECKF(rc == 2, "%s: accepted (rc %d)", name, rc);
    TU_CHECKF(strstr(err, path) == err, "%s: error does not start with the path: '%s'", name, err);
    TU_CHECKF(img.rgb == NULL && img.w == 0, "%s: image not cleared after the error", name);
    printf("  %s -> %s\n", name, err);
    float *x = tu_alloc(3 * 8 * 8, "x");
    TU_CHECKF(anx_image_load(x, path, 8, 0, err, sizeof err) == 2, "%s: the pipeline accepted it", name);
    tu_free(x);
}

/* Every kind the writer knows, written and read back: the reader's conversions on our own data. */
static void check_roundtrip(void)
{
    const int w = 9, h = 5;
    const struct { int ct, depth, inter; } specs[] = {
        {ANX_PNG_GRAY, 1, 0}, {ANX_PNG_GRAY, 4, 1},    {ANX_PNG_GRAY, 16, 0}, {ANX_PNG_GRAY_ALPHA, 8, 0},
        {ANX_PNG_RGB, 8, 1},  {ANX_PNG_RGB, 16, 0},    {ANX_PNG_RGBA, 16, 1}, {ANX_PNG_PALETTE, 2, 0},
        {ANX_PNG_PALETTE, 8, 1}};
    unsigned char pal[256 * 3], trns[256];
    for (int i = 0; i < 256 * 3; i++) pal[i] = (unsigned char)(i * 7 + 3);
    for (int i = 0; i < 256; i++) trns[i] = (unsigned char)i;
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        int ct = specs[k].ct, d = specs[k].depth, ch = anx_png_channels(ct);
        uint16_t s[9 * 5 * 4];
        for (int i = 0; i < w * h * ch; i++) s[i] = (uint16_t)((i * 2654435761u >> 7) & ((1u << d) - 1));
        anx_png_spec spec = {.w = w, .h = h, .color_type = ct, .bit_depth = d, .interlace = specs[k].inter,
                             .palette = pal, .npalette = 1 << (d < 8 ? d : 8), .trns = trns, .ntrns = 3};
        char path[64], err[512];
        snprintf(path, sizeof path, "test_png_rt_%zu.png", k);
        TU_CHECKF(anx_png_write(path, &spec, s, err, sizeof err) == 0, "write %s: %s", path, err);
        anx_image img;
        if (anx_png_read(&img, path, err, sizeof err) != 0) {
            TU_CHECKF(0, "read back %s: %s", path, err);
            continue;
        }
        int bad = 0;
        for (int p = 0; p < w * h; p++)
            for (int c = 0; c < 3; c++) {
                unsigned want;
                const uint16_t *px = s + p * ch;
                if (ct == ANX_PNG_PALETTE) want = pal[px[0] * 3 + c];
                else if (d == 16) want = px[ch <= 2 ? 0 : c] >> 8;
                else if (d < 8) want = px[0] * (255u / ((1u << d) - 1));
                else want = px[ch <= 2 ? 0 : c];
                bad += img.rgb[p * 3 + c] != want;
            }
        TU_CHECKF(bad == 0, "%s (colour type %d, depth %d, interlace %d): %d samples differ", path, ct, d,
                  specs[k].inter, bad);
        anx_image_free(&img);
        remove(path);
    }
    /* an invalid spec is refused before anything is created */
    anx_png_spec badspec = {.w = 4, .h = 4, .color_type = ANX_PNG_RGB, .bit_depth = 4};
    uint16_t s[48] = {0};
    char err[512];
    TU_CHECK(anx_png_write("test_png_never.png", &badspec, s, err, sizeof err) == 2);
    FILE *f = fopen("test_png_never.png", "rb");
    TU_CHECKF(f == NULL, "a refused write left a file behind");
    if (f) fclose(f);
}

int main(void)
{
    anx_st_file exp;
    char err[512];
    if (anx_st_read(&exp, FIX "/expected.safetensors", err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) check_kind(&exp, kinds[i]);
    const char *bad[] = {"bad_truncated", "bad_crc", "bad_signature", "bad_empty", "bad_ihdr", "bad_zlib", "bad_text"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) check_bad(bad[i]);
    char missing[] = FIX "/png/no_such_file.png";
    anx_image img;
    TU_CHECK(anx_png_read(&img, missing, err, sizeof err) == 2 && strstr(err, missing) == err);
    check_roundtrip();
    anx_st_free(&exp);
    return tu_finish("test_png");
}
