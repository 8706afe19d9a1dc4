/* The pictures of `anx train`, written with the libpng writer of core/png_load.c. */
#include "train_pictures.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/data.h"

/* 5x7 lower-case letters, '#' = ink; anything else is drawn as a hollow box. */
static const char *const font[26][7] = {
    {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"}, /* a */
    {"#....", "#....", "####.", "#...#", "#...#", "#...#", "####."},
    {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."},
    {"....#", "....#", ".####", "#...#", "#...#", "#...#", ".####"},
    {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."},
    {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."},
    {".....", ".####", "#...#", "#...#", ".####", "....#", ".###."},
    {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"},
    {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."},
    {"...#.", ".....", "..##.", "...#.", "...#.", "#..#.", ".##.."},
    {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."},
    {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."},
    {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"},
    {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"},
    {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."},
    {".....", ".....", "####.", "#...#", "####.", "#....", "#...."},
    {".....", ".....", ".####", "#...#", ".####", "....#", "....#"},
    {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."},
    {".....", ".....", ".####", "#....", ".###.", "....#", "####."},
    {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."},
    {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"},
    {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."},
    {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."},
    {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"},
    {".....", ".....", "#...#", "#...#", ".####", "....#", ".###."},
    {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"}, /* z */
};

static void put(anx_image *im, int x, int y, const unsigned char c[3])
{
    if (x < 0 || y < 0 || x >= im->w || y >= im->h) return;
    memcpy(im->rgb + ((size_t)y * im->w + x) * 3, c, 3);
}

static void text(anx_image *im, int x, int y, const char *s, int scale, const unsigned char c[3])
{
    for (; *s; s++, x += 6 * scale) {
        int ch = *s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s;
        for (int r = 0; r < 7; r++)
            for (int k = 0; k < 5; k++) {
                int ink = ch >= 'a' && ch <= 'z' ? font[ch - 'a'][r][k] == '#'
                                                 : (r == 0 || r == 6 || k == 0 || k == 4); /* box */
                if (ch == ' ' || ch == '_' || ch == '-') ink = (ch != ' ') && r == 6;
                if (!ink) continue;
                for (int dy = 0; dy < scale; dy++)
                    for (int dx = 0; dx < scale; dx++) put(im, x + k * scale + dx, y + r * scale + dy, c);
            }
    }
}

static void class_colour(int cls, unsigned char c[3])
{
    static const unsigned char pal[10][3] = {{230, 25, 75},  {60, 180, 75}, {255, 225, 25}, {0, 130, 200},
                                             {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230},
                                             {210, 245, 60}, {128, 128, 128}};
    memcpy(c, pal[cls % 10], 3);
}

int train_write_grid(const char *path, const float *x, const int64_t *y, int n, int size,
                     const char *const *classes, char *err, size_t errlen)
{
    const int cols = n < 4 ? n : 4, rows = (n + cols - 1) / cols, pad = 6, label = 32;
    anx_image im = {cols * (size + pad) + pad, rows * (size + pad + label) + pad, NULL};
    im.rgb = malloc((size_t)im.w * im.h * 3);
    if (!im.rgb) {
        snprintf(err, errlen, "%s: out of memory", path);
        return 2;
    }
    memset(im.rgb, 255, (size_t)im.w * im.h * 3);
    const size_t plane = (size_t)size * size;
    for (int i = 0; i < n; i++) {
        int ox = pad + (i % cols) * (size + pad), oy = pad + (i / cols) * (size + pad + label);
        const float *img = x + (size_t)i * 3 * plane; /* [3, size, size] */
        for (int r = 0; r < size; r++)
            for (int c = 0; c < size; c++) {
                unsigned char px[3];
                for (int k = 0; k < 3; k++) {
                    float v = img[k * plane + (size_t)r * size + c] * 255.0f + 0.5f;
                    px[k] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
                put(&im, ox + c, oy + r, px);
            }
        unsigned char col[3], black[3] = {0, 0, 0};
        class_colour((int)y[i], col);
        for (int r = 0; r < 8; r++)
            for (int c = 0; c < size; c++) put(&im, ox + c, oy + size + 2 + r, col);
        text(&im, ox, oy + size + 13, classes[y[i]], 2, black);
    }
    int rc = anx_png_write_rgb8(path, &im, err, errlen);
    anx_image_free(&im);
    return rc;
}

int train_write_filters(const char *path, const float *w, int oc, int ic, int k, char *err, size_t errlen)
{
    const int cols = 12, rows = (oc + cols - 1) / cols, zoom = 4, gap = 2, tile = k * zoom;
    anx_image im = {cols * (tile + gap) + gap, rows * (tile + gap) + gap, NULL};
    im.rgb = malloc((size_t)im.w * im.h * 3);
    if (!im.rgb) {
        snprintf(err, errlen, "%s: out of memory", path);
        return 2;
    }
    memset(im.rgb, 40, (size_t)im.w * im.h * 3);
    const size_t per = (size_t)ic * k * k;
    for (int o = 0; o < oc; o++) {
        const float *f = w + o * per; /* [ic, k, k] */
        float lo = INFINITY, hi = -INFINITY;
        for (size_t i = 0; i < per; i++) lo = fminf(lo, f[i]), hi = fmaxf(hi, f[i]);
        float s = hi > lo ? 255.0f / (hi - lo) : 0;
        int ox = gap + (o % cols) * (tile + gap), oy = gap + (o / cols) * (tile + gap);
        for (int r = 0; r < k; r++)
            for (int c = 0; c < k; c++) {
                unsigned char px[3];
                for (int ch = 0; ch < 3; ch++) {
                    const float v = f[(size_t)(ch < ic ? ch : 0) * k * k + (size_t)r * k + c];
                    px[ch] = (unsigned char)((v - lo) * s + 0.5f);
                }
                for (int dy = 0; dy < zoom; dy++)
                    for (int dx = 0; dx < zoom; dx++) put(&im, ox + c * zoom + dx, oy + r * zoom + dy, px);
            }
    }
    int rc = anx_png_write_rgb8(path, &im, err, errlen);
    anx_image_free(&im);
    return rc;
}
