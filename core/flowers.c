/* Synthetic flowers: a 5-class picture set drawn procedurally, for training without downloads.
 *
 * Each class has its own petal count, petal shape, layout and colour family (see class_style);
 * position, scale, rotation, background, petal jitter, noise and the PNG kind are random, all
 * drawn from the counter RNG keyed by (seed, split, class, index), so a set is a pure function
 * of its seed.  Colour alone does not separate every pair (red tulips vs roses, yellow tulips vs
 * dandelions and sunflowers, grayscale pictures), so a model must also use shape. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <errno.h>

#include "anx/data.h"
#include "anx/rng.h"

#define PI_F 3.14159265358979f

const char *const anx_flower_classes[ANX_FLOWER_CLASSES] = {"daisy", "dandelion", "roses", "sunflowers",
                                                             "tulips"};

typedef struct draw_rng {
    uint64_t key;
    uint64_t i;
} draw_rng;

static float rnd(draw_rng *r) { return (float)anx_rng_u01(r->key, r->i++); }
static float rnd_in(draw_rng *r, float lo, float hi) { return lo + (hi - lo) * rnd(r); }

typedef struct canvas {
    int w, h;
    float *px; /* [h, w, 3] in 0..255 */
} canvas;

static void blend(canvas *c, int x, int y, const float col[3], float cov)
{
    if (cov <= 0) return;
    if (cov > 1) cov = 1;
    float *p = c->px + ((size_t)y * c->w + x) * 3;
    for (int k = 0; k < 3; k++) p[k] += (col[k] - p[k]) * cov;
}

static float clampf(float x, float lo, float hi) { return x < lo ? lo : x > hi ? hi : x; }

/* Background: a vertical gradient between two colours of one scene (grass, soil, sky, wall)
 * with a few soft blobs of foliage. */
static void draw_background(canvas *c, draw_rng *r)
{
    static const float scenes[][3] = {{60, 110, 40},  {95, 140, 60},  {120, 95, 60},  {110, 160, 210},
                                      {150, 150, 145}, {40, 70, 35},  {170, 150, 110}, {70, 90, 120}};
    const int ns = (int)(sizeof scenes / sizeof scenes[0]);
    float a[3], b[3];
    const float *sa = scenes[(int)(rnd(r) * ns) % ns], *sb = scenes[(int)(rnd(r) * ns) % ns];
    for (int k = 0; k < 3; k++) a[k] = sa[k] + rnd_in(r, -25, 25), b[k] = sb[k] + rnd_in(r, -25, 25);
    for (int y = 0; y < c->h; y++) {
        float t = (float)y / (float)(c->h - 1);
        for (int x = 0; x < c->w; x++)
            for (int k = 0; k < 3; k++) c->px[((size_t)y * c->w + x) * 3 + k] = a[k] + (b[k] - a[k]) * t;
    }
    int blobs = (int)rnd_in(r, 2, 7);
    for (int i = 0; i < blobs; i++) {
        float bx = rnd_in(r, 0, (float)c->w), by = rnd_in(r, 0, (float)c->h);
        float br = rnd_in(r, 0.1f, 0.35f) * (float)(c->w < c->h ? c->w : c->h);
        float col[3] = {rnd_in(r, 30, 110), rnd_in(r, 60, 150), rnd_in(r, 20, 80)};
        for (int y = 0; y < c->h; y++)
            for (int x = 0; x < c->w; x++) {
                float d = hypotf((float)x - bx, (float)y - by) / br;
                if (d < 1) blend(c, x, y, col, 0.6f * (1 - d * d));
            }
    }
}

typedef enum { SHAPE_ELLIPSE, SHAPE_POINTED, SHAPE_ROUND } petal_shape;

/* One ring of n radial petals around (cx, cy): petal k points at rot + 2 pi k / n, spans
 * radius r0 .. r0 + len, and has half-width hw(t) (t = 0..1 along it) by shape. */
typedef struct ring {
    int n;
    float r0, len, width, rot;
    petal_shape shape;
    float col[3];
    float jitter[64]; /* per-petal brightness */
} ring;

static float half_width(const ring *g, float t)
{
    switch (g->shape) {
    case SHAPE_POINTED: return 0.5f * g->width * powf(sinf(PI_F * t), 0.8f) * (1.0f - 0.4f * t);
    case SHAPE_ROUND: return 0.5f * g->width * sqrtf(fmaxf(0, 1 - (2 * t - 1) * (2 * t - 1))) * (0.7f + 0.3f * t);
    default: return 0.5f * g->width * sqrtf(fmaxf(0, 1 - (2 * t - 1) * (2 * t - 1)));
    }
}

static void draw_ring(canvas *c, float cx, float cy, const ring *g)
{
    const float reach = g->r0 + g->len + 2;
    int x0 = (int)fmaxf(0, cx - reach), x1 = (int)fminf((float)c->w - 1, cx + reach);
    int y0 = (int)fmaxf(0, cy - reach), y1 = (int)fminf((float)c->h - 1, cy + reach);
    const float step = 2 * PI_F / (float)g->n;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            float dx = (float)x - cx, dy = (float)y - cy, r = hypotf(dx, dy);
            if (r > reach) continue;
            float phi = atan2f(dy, dx) - g->rot;
            int kc = (int)floorf(phi / step + 0.5f);
            float best = 0, shade = 0;
            int bestk = 0;
            for (int dk = -1; dk <= 1; dk++) { /* the nearest petals by angle can cover this pixel */
                int k = kc + dk;
                float a = g->rot + step * (float)k;
                float u = dx * cosf(a) + dy * sinf(a), v = -dx * sinf(a) + dy * cosf(a);
                float t = (u - g->r0) / g->len;
                if (t < 0 || t > 1) continue;
                float hw = half_width(g, t);
                float cov = clampf(hw - fabsf(v) + 0.5f, 0, 1) * clampf(fminf(u - g->r0, g->r0 + g->len - u) + 0.5f, 0, 1);
                if (cov > best) best = cov, bestk = k, shade = hw > 0 ? 1 - fabsf(v) / hw : 0;
            }
            if (best <= 0) continue;
            int kk = ((bestk % g->n) + g->n) % g->n;
            float m = (0.72f + 0.28f * shade) * g->jitter[kk % 64], col[3];
            for (int k = 0; k < 3; k++) col[k] = clampf(g->col[k] * m, 0, 255);
            blend(c, x, y, col, best);
        }
}

static void draw_disc(canvas *c, float cx, float cy, float rad, const float col[3], float texture, draw_rng *r)
{
    float dots = rnd_in(r, 0, 6.28f);
    for (int y = (int)fmaxf(0, cy - rad - 2); y <= (int)fminf((float)c->h - 1, cy + rad + 2); y++)
        for (int x = (int)fmaxf(0, cx - rad - 2); x <= (int)fminf((float)c->w - 1, cx + rad + 2); x++) {
            float d = hypotf((float)x - cx, (float)y - cy);
            float cov = clampf(rad - d + 0.5f, 0, 1);
            if (cov <= 0) continue;
            float m = 1 - texture * 0.5f * (1 + sinf(0.9f * (float)x + dots) * sinf(0.9f * (float)y - dots));
            float cc[3] = {col[0] * m, col[1] * m, col[2] * m};
            blend(c, x, y, cc, cov);
        }
}

/* A filled ellipse centred (ex, ey), semi-axes (ax, ay), rotated by a; shaded toward its rim. */
static void draw_ellipse(canvas *c, float ex, float ey, float ax, float ay, float a, const float col[3])
{
    float reach = fmaxf(ax, ay) + 2, ca = cosf(a), sa = sinf(a);
    for (int y = (int)fmaxf(0, ey - reach); y <= (int)fminf((float)c->h - 1, ey + reach); y++)
        for (int x = (int)fmaxf(0, ex - reach); x <= (int)fminf((float)c->w - 1, ex + reach); x++) {
            float dx = (float)x - ex, dy = (float)y - ey;
            float u = (dx * ca + dy * sa) / ax, v = (-dx * sa + dy * ca) / ay;
            float d = sqrtf(u * u + v * v);
            float cov = clampf((1 - d) * fminf(ax, ay) + 0.5f, 0, 1);
            if (cov <= 0) continue;
            float m = 0.7f + 0.3f * (1 - d), cc[3] = {col[0] * m, col[1] * m, col[2] * m};
            blend(c, x, y, cc, cov);
        }
}

static void jitter_ring(ring *g, draw_rng *r, float amount)
{
    for (int k = 0; k < 64; k++) g->jitter[k] = 1 + rnd_in(r, -amount, amount);
}

static void colour(float out[3], float r0, float g0, float b0, draw_rng *r, float amount)
{
    out[0] = clampf(r0 + rnd_in(r, -amount, amount), 0, 255);
    out[1] = clampf(g0 + rnd_in(r, -amount, amount), 0, 255);
    out[2] = clampf(b0 + rnd_in(r, -amount, amount), 0, 255);
}

static void draw_flower(canvas *c, int cls, draw_rng *r)
{
    const float m = (float)(c->w < c->h ? c->w : c->h);
    const float R = rnd_in(r, 0.22f, 0.42f) * m;
    const float cx = rnd_in(r, 0.65f * R, (float)c->w - 0.65f * R), cy = rnd_in(r, 0.65f * R, (float)c->h - 0.65f * R);
    const float rot = rnd_in(r, 0, 2 * PI_F);
    ring g = {0};
    float centre[3];
    switch (cls) {
    case 0: /* daisy: 13-21 long white elliptic petals, small yellow centre */
        g = (ring){.n = (int)rnd_in(r, 13, 22), .r0 = 0.18f * R, .len = 0.82f * R, .width = 0.16f * R, .rot = rot,
                   .shape = SHAPE_ELLIPSE};
        colour(g.col, 248, 246, 240, r, 10);
        jitter_ring(&g, r, 0.06f);
        draw_ring(c, cx, cy, &g);
        colour(centre, 235, 185, 35, r, 15);
        draw_disc(c, cx, cy, 0.2f * R, centre, 0.25f, r);
        break;
    case 1: /* dandelion: two dense layers of 36-56 thin yellow rays, no distinct centre */
        for (int layer = 0; layer < 2; layer++) {
            g = (ring){.n = (int)rnd_in(r, 36, 57), .r0 = 0.04f * R, .len = (layer ? 0.62f : 0.95f) * R,
                       .width = 0.07f * R, .rot = rot + (float)layer * 0.05f, .shape = SHAPE_ELLIPSE};
            colour(g.col, 250, layer ? 200 : 215, 25, r, 12);
            jitter_ring(&g, r, 0.12f);
            draw_ring(c, cx, cy, &g);
        }
        break;
    case 2: /* roses: three rings of five broad round petals, red to dark red toward the middle */
        colour(centre, 195, 25, 45, r, 25);
        for (int layer = 0; layer < 3; layer++) {
            float s = 1.0f - 0.3f * (float)layer;
            g = (ring){.n = 5, .r0 = 0.05f * R * s, .len = 0.95f * R * s, .width = 0.95f * R * s,
                       .rot = rot + (float)layer * 0.63f, .shape = SHAPE_ROUND};
            for (int k = 0; k < 3; k++) g.col[k] = centre[k] * (1.0f - 0.15f * (float)layer);
            jitter_ring(&g, r, 0.08f);
            draw_ring(c, cx, cy, &g);
        }
        break;
    case 3: /* sunflowers: 18-26 pointed orange-yellow petals round a large brown disc */
        g = (ring){.n = (int)rnd_in(r, 18, 27), .r0 = 0.38f * R, .len = 0.62f * R, .width = 0.2f * R, .rot = rot,
                   .shape = SHAPE_POINTED};
        colour(g.col, 250, 180, 20, r, 15);
        jitter_ring(&g, r, 0.1f);
        draw_ring(c, cx, cy, &g);
        colour(centre, 95, 58, 22, r, 15);
        draw_disc(c, cx, cy, 0.42f * R, centre, 0.45f, r);
        break;
    default: { /* tulips: an upright cup of three petals on a green stem; red, pink, purple or yellow */
        static const float cols[][3] = {{200, 30, 40}, {235, 110, 160}, {130, 40, 140}, {245, 205, 40}, {240, 120, 30}};
        const float *tc = cols[(int)(rnd(r) * 5) % 5];
        float col[3], stem[3], tilt = rnd_in(r, -0.45f, 0.45f);
        colour(col, tc[0], tc[1], tc[2], r, 20);
        colour(stem, 50, 120, 40, r, 15);
        float sx = sinf(tilt), cy2 = cosf(tilt);
        for (float t = 0; t < 2.5f * R; t += 0.5f) /* stem from the cup's base downward */
            draw_disc(c, cx - sx * (0.4f * R + t), cy + cy2 * (0.4f * R + t), 0.05f * R, stem, 0, r);
        draw_ellipse(c, cx - sx * 1.1f * R + 0.25f * R, cy + cy2 * 1.1f * R, 0.4f * R, 0.12f * R, tilt + 0.5f, stem);
        float ax = 0.24f * R, ay = 0.48f * R;
        draw_ellipse(c, cx + cy2 * 0.2f * R, cy + sx * 0.2f * R, ax, ay, tilt + 0.25f, col);
        draw_ellipse(c, cx - cy2 * 0.2f * R, cy - sx * 0.2f * R, ax, ay, tilt - 0.25f, col);
        float mid[3] = {col[0] * 1.08f, col[1] * 1.08f, col[2] * 1.08f};
        for (int k = 0; k < 3; k++) mid[k] = clampf(mid[k], 0, 255);
        draw_ellipse(c, cx, cy - 0.03f * R, ax * 1.05f, ay * 1.05f, tilt, mid);
        break;
    }
    }
}

/* PNG kind: mostly 8-bit RGB, and every other kind an ImageFolder of real photos may hold. */
static void choose_kind(anx_png_spec *k, float u)
{
    memset(k, 0, sizeof *k);
    k->bit_depth = 8;
    if (u < 0.50f) k->color_type = ANX_PNG_RGB;
    else if (u < 0.62f) k->color_type = ANX_PNG_PALETTE;
    else if (u < 0.70f) k->color_type = ANX_PNG_PALETTE, k->ntrns = 1; /* with tRNS */
    else if (u < 0.78f) k->color_type = ANX_PNG_RGBA;
    else if (u < 0.85f) k->color_type = ANX_PNG_RGB, k->bit_depth = 16;
    else if (u < 0.92f) k->color_type = ANX_PNG_RGB, k->interlace = 1;
    else if (u < 0.96f) k->color_type = ANX_PNG_GRAY;
    else k->color_type = ANX_PNG_GRAY_ALPHA;
}

static int split_sub(int split, int cls, int index) { return (split * 8 + cls) * 1000003 + index; }

int anx_flower_draw(anx_image *img, anx_png_spec *kind, uint64_t seed, int split, int cls, int index)
{
    draw_rng r = {anx_rng_key(seed, "flowers", (uint64_t)split_sub(split, cls, index)), 0};
    canvas c = {(int)rnd_in(&r, 170, 301), (int)rnd_in(&r, 170, 301), NULL};
    choose_kind(kind, rnd(&r));
    c.px = malloc(sizeof(float) * 3 * (size_t)c.w * c.h);
    img->rgb = malloc(3 * (size_t)c.w * c.h);
    if (!c.px || !img->rgb) {
        free(c.px);
        free(img->rgb);
        img->rgb = NULL;
        return 2;
    }
    draw_background(&c, &r);
    draw_flower(&c, cls, &r);
    /* sensor noise of random strength, from its own stream */
    const float amp = rnd_in(&r, 2, 22);
    const uint64_t nkey = anx_rng_key(seed, "flowers.noise", (uint64_t)split_sub(split, cls, index));
    for (size_t i = 0; i < 3 * (size_t)c.w * c.h; i++) {
        float v = c.px[i] + amp * (float)(anx_rng_u01(nkey, i) * 2 - 1);
        img->rgb[i] = (unsigned char)clampf(floorf(v + 0.5f), 0, 255);
    }
    img->w = c.w;
    img->h = c.h;
    free(c.px);
    return 0;
}

int anx_png_write_as(const char *path, const anx_image *img, const anx_png_spec *kind, char *err, size_t errlen)
{
    anx_png_spec s = *kind;
    s.w = img->w, s.h = img->h;
    const size_t np = (size_t)img->w * img->h;
    uint16_t *smp = malloc(sizeof(uint16_t) * 4 * np);
    unsigned char pal[256 * 3], trns[256];
    if (!smp) {
        snprintf(err, errlen, "%s: out of memory", path);
        return 2;
    }
    for (size_t i = 0; i < np; i++) {
        const unsigned char *p = img->rgb + 3 * i;
        /* PIL's L = R*299/1000 + G*587/1000 + B*114/1000 (ITU-R 601-2), rounded */
        uint16_t lum = (uint16_t)((p[0] * 299 + p[1] * 587 + p[2] * 114 + 500) / 1000);
        switch (s.color_type) {
        case ANX_PNG_RGB:
            for (int k = 0; k < 3; k++) smp[3 * i + k] = s.bit_depth == 16 ? (uint16_t)(p[k] * 257) : p[k];
            break;
        case ANX_PNG_RGBA: /* a random-looking alpha that readers must ignore */
            for (int k = 0; k < 3; k++) smp[4 * i + k] = p[k];
            smp[4 * i + 3] = (uint16_t)((i * 37) & 255);
            break;
        case ANX_PNG_GRAY: smp[i] = lum; break;
        case ANX_PNG_GRAY_ALPHA:
            smp[2 * i] = lum;
            smp[2 * i + 1] = (uint16_t)(255 - (i & 127));
            break;
        case ANX_PNG_PALETTE: /* a 6x7x6 colour cube */
            smp[i] = (uint16_t)(((p[0] * 5 + 127) / 255) * 42 + ((p[1] * 6 + 127) / 255) * 6 + (p[2] * 5 + 127) / 255);
            break;
        }
    }
    if (s.color_type == ANX_PNG_PALETTE) {
        for (int i = 0; i < 252; i++) {
            pal[3 * i] = (unsigned char)((i / 42) * 255 / 5);
            pal[3 * i + 1] = (unsigned char)((i / 6 % 7) * 255 / 6);
            pal[3 * i + 2] = (unsigned char)((i % 6) * 255 / 5);
            trns[i] = (unsigned char)(i * 97 & 255);
        }
        s.palette = pal, s.npalette = 252;
        s.trns = trns, s.ntrns = s.ntrns ? 252 : 0;
    }
    int rc = anx_png_write(path, &s, smp, err, errlen);
    free(smp);
    return rc;
}

static int make_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0777) == 0 || errno == EEXIST) return 0;
    snprintf(err, errlen, "%s: cannot create directory: %s", path, strerror(errno));
    return 2;
}

int anx_flowers_write(const char *out, int per_class, int val_per_class, uint64_t seed, char *err, size_t errlen)
{
    static const char *const splits[2] = {"train", "val"};
    const size_t plen = strlen(out) + 64;
    char *path = malloc(plen);
    if (!path) {
        snprintf(err, errlen, "%s: out of memory", out);
        return 2;
    }
    int rc = make_dir(out, err, errlen);
    for (int sp = 0; sp < 2 && rc == 0; sp++) {
        snprintf(path, plen, "%s/%s", out, splits[sp]);
        rc = make_dir(path, err, errlen);
        for (int cls = 0; cls < ANX_FLOWER_CLASSES && rc == 0; cls++) {
            snprintf(path, plen, "%s/%s/%s", out, splits[sp], anx_flower_classes[cls]);
            rc = make_dir(path, err, errlen);
            int count = sp == 0 ? per_class : val_per_class;
            for (int i = 0; i < count && rc == 0; i++) {
                anx_image img = {0};
                anx_png_spec kind;
                if (anx_flower_draw(&img, &kind, seed, sp, cls, i)) {
                    snprintf(err, errlen, "%s: out of memory drawing image %d", path, i);
                    rc = 2;
                    break;
                }
                snprintf(path, plen, "%s/%s/%s/%04d.png", out, splits[sp], anx_flower_classes[cls], i);
                rc = anx_png_write_as(path, &img, &kind, err, errlen);
                anx_image_free(&img);
            }
        }
    }
    free(path);
    return rc;
}
