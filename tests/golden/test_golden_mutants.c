/* test_golden_mutants: mutant backends prove the golden gate (issue #15 item 4).
 *
 * Each mutant wraps a real backend of the build and plants exactly one bug (mutant_backend.h):
 *   elem      one element of one output moved by 1e-3 x that tensor's max |x|, at an index drawn
 *             from the seed anywhere in the tensor (then the next non-zero element): every
 *             (layer, direction, output) of the one-step file, the loss, every Adam state tensor
 *             (param, exp_avg, exp_avg_sq) in step 1 and step 3 of the three-step file, and every
 *             parameter gradient in step 1 and step 3 of the three-step file (chained mode);
 *   eps       Adam with eps 1e-7 instead of 1e-8;
 *   sign      one non-zero element of a bias gradient with its sign flipped;
 *   dropout   the dropout mask of sample s applied to sample s + 1.
 * The gate (anx_verify_golden, the library behind `anx verify`, with the mutant handed in through
 * anx_verify_opts.backends) must give exit status 1 and a FAILED row naming the mutated layer
 * and tensor, in isolated and in chained mode, for every backend of the build that can run here.
 * A mutant that survives fails the test, unless --known FILE lists it: one line per pattern,
 * "PATTERN REL" (an fnmatch pattern of mutant ids and the smallest change, as a fraction of max
 * |x|, that the gate is claimed to catch there).  A listed mutant that survives the 1e-3 change is
 * planted again at the same element with REL and must then be caught (issue #18: the Winograd
 * rows' derived bound is above 1e-3 of max |x|, so there the claim is the larger change).
 * A control (the wrapper with no bug) must pass, so the harness cannot fail everything.
 *
 *   test_golden_mutants [--seed S] [--sample N] [--backend B] [--mode isolated|chained|all]
 *                       [--part K/N] [--only PATTERN] [--known FILE] [--rel R] [--list]
 * The seed (default: $ANX_SWEEP_SEED, else the clock) draws the sample and every index; it is
 * printed with the command that reruns the same mutants.  Exit 0, 1 (a mutant survived or the
 * harness failed), 2 bad arguments, 77 when no backend of the build can run here.
 */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anx/rng.h"
#include "anx/safetensors.h"
#include "anx/verify.h"
#include "mutant_backend.h"
#include "testutil.h"

#define SKIP_CODE 77
#define FILE_ONE ANX_SOURCE_DIR "/data/golden/alexnet_in3_c5_b2_step1.safetensors"
#define FILE_THREE ANX_SOURCE_DIR "/data/golden/alexnet_in3_c5_b2_steps3.safetensors"
#define MAX_MUTANTS 4096
#define MAX_KNOWN 256
#define THREADS 2 /* the CI machine's cores */

typedef struct mutant {
    char id[160];       /* "one:isolated:avx2:Conv2d-7:bwd_weights:grad.conv.6.weight" */
    const char *file;
    const char *mode;   /* "isolated" or "chained" */
    const anx_backend *be;
    mutant_spec spec;
    char row_layer[24]; /* the FAILED row that must name it */
    char row_tensor[64]; /* "" = any tensor of row_layer */
    char only_layer[24]; /* --layer of the run */
} mutant;

static struct {
    uint64_t seed;
    int sample, list, part_k, part_n;
    const char *backend, *mode, *only, *known;
    double rel; /* --rel: element changes of this fraction of max |x| (0: MUTANT_REL) */
} g_opt = {0, 0, 0, 0, 0, "all", "all", NULL, NULL, 0};

static mutant g_mut[MAX_MUTANTS];
static int g_count;
static struct {
    char pattern[160];
    double rel; /* the change this pattern's mutants must be caught at */
} g_known[MAX_KNOWN];
static int g_nknown;

static mutant *add(const char *file, const char *mode, const anx_backend *be, const mutant_spec *s, const char *layer,
                   const char *tensor, const char *tag)
{
    const char *ftag = strstr(file, "steps3") ? "three" : "one";
    if (g_count == MAX_MUTANTS) return NULL;
    mutant *m = &g_mut[g_count++];
    memset(m, 0, sizeof *m);
    m->file = file, m->mode = mode, m->be = be, m->spec = *s;
    snprintf(m->row_layer, sizeof m->row_layer, "%s", layer);
    snprintf(m->row_tensor, sizeof m->row_tensor, "%s", tensor);
    snprintf(m->only_layer, sizeof m->only_layer, "%s", layer);
    snprintf(m->id, sizeof m->id, "%s:%s:%s:%s:%s", ftag, mode, be->name, layer, tag);
    return m;
}

static mutant_spec spec(mutant_kind k, const char *layer, anx_dir dir, anx_slot slot, int64_t step)
{
    mutant_spec s;
    memset(&s, 0, sizeof s);
    s.kind = k, s.dir = dir, s.slot = slot, s.step = step;
    snprintf(s.layer, sizeof s.layer, "%s", layer);
    return s;
}

/* Every output of every (layer, direction) of the one-step file, and the loss. */
static void add_layer_mutants(const anx_model *m, const char *mode, const anx_backend *be)
{
    char tensor[96], tag[160];
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m->layers[i];
        snprintf(tensor, sizeof tensor, "out.%s", l->name);
        snprintf(tag, sizeof tag, "fwd:%s", tensor);
        mutant_spec s = spec(MUTANT_ELEM, l->name, ANX_FWD, ANX_DST, 0);
        add(FILE_ONE, mode, be, &s, l->name, tensor, tag);
        if (i > 0) {
            snprintf(tensor, sizeof tensor, "grad_out.%s", m->layers[i - 1].name);
            snprintf(tag, sizeof tag, "bwd_data:%s", tensor);
            s = spec(MUTANT_ELEM, l->name, ANX_BWD_DATA, ANX_SRC, 0);
            add(FILE_ONE, mode, be, &s, l->name, tensor, tag);
        }
        if (!anx_desc_has_weights(l)) continue;
        for (int p = 0; p < ANX_NUM_PARAMS; p++) {
            if (m->params[p].layer != i) continue;
            snprintf(tensor, sizeof tensor, "grad.%s", m->params[p].name);
            snprintf(tag, sizeof tag, "bwd_weights:%s", tensor);
            s = spec(MUTANT_ELEM, l->name, ANX_BWD_WEIGHTS, m->params[p].slot, 0);
            add(FILE_ONE, mode, be, &s, l->name, tensor, tag);
        }
    }
    mutant_spec s = spec(MUTANT_ELEM, "CrossEntropyLoss", ANX_FWD, ANX_DST, 0);
    add(FILE_ONE, mode, be, &s, "CrossEntropyLoss", "loss", "fwd:loss");
    s = spec(MUTANT_ELEM, "CrossEntropyLoss", ANX_BWD_DATA, ANX_SRC, 0);
    add(FILE_ONE, mode, be, &s, "CrossEntropyLoss", "grad_out.Linear-20", "bwd_data:grad_out.Linear-20");
}

/* Every Adam state tensor after step 1 and step 3 of the three-step file; in chained mode also
 * every parameter gradient of step 1 and step 3. */
static void add_state_mutants(const anx_model *m, const char *mode, const anx_backend *be)
{
    static const char *const pre[3] = {"", "adam.exp_avg.", "adam.exp_avg_sq."};
    char tensor[96], tag[160];
    for (int t = 1; t <= 3; t += 2)
        for (int p = 0; p < ANX_NUM_PARAMS; p++) {
            for (int k = 0; k < 3; k++) {
                mutant_spec s = spec(MUTANT_ELEM, "Adam", ANX_FWD, ANX_DST, t);
                s.param = p, s.state = k;
                /* the gate names the state after an update before the last "step<t>.<key>" */
                if (t < 3) snprintf(tensor, sizeof tensor, "step%d.%s%s", t, pre[k], m->params[p].name);
                else snprintf(tensor, sizeof tensor, "%s%s", pre[k], m->params[p].name);
                snprintf(tag, sizeof tag, "step%d:%s%s", t, pre[k], m->params[p].name);
                add(FILE_THREE, mode, be, &s, "Adam", tensor, tag);
            }
            if (strcmp(mode, "chained")) continue; /* isolated mode feeds the golden gradients */
            const anx_layer_desc *l = &m->layers[m->params[p].layer];
            mutant_spec s = spec(MUTANT_ELEM, l->name, ANX_BWD_WEIGHTS, m->params[p].slot, t);
            snprintf(tensor, sizeof tensor, "step%d.grad.%s", t, m->params[p].name);
            snprintf(tag, sizeof tag, "bwd_weights:%s", tensor);
            add(FILE_THREE, mode, be, &s, l->name, tensor, tag);
        }
}

/* Adam eps, a bias gradient's sign (of a layer drawn from the seed), the dropout masks. */
static void add_special_mutants(const anx_model *m, const char *mode, const anx_backend *be)
{
    mutant_spec s = spec(MUTANT_ADAM_EPS, "Adam", ANX_FWD, ANX_DST, 0);
    add(FILE_ONE, mode, be, &s, "Adam", "", "eps:1e-7");
    int bias = 1 + 2 * (int)(anx_rng_bits(anx_rng_key(g_opt.seed, "bias-sign", 0), 0) % (ANX_NUM_PARAMS / 2));
    const anx_layer_desc *l = &m->layers[m->params[bias].layer];
    char tensor[96], tag[160];
    snprintf(tensor, sizeof tensor, "grad.%s", m->params[bias].name);
    snprintf(tag, sizeof tag, "sign:%s", tensor);
    s = spec(MUTANT_BIAS_SIGN, l->name, ANX_BWD_WEIGHTS, ANX_BIAS, 0);
    add(FILE_ONE, mode, be, &s, l->name, tensor, tag);
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        if (m->layers[i].op != ANX_OP_DROPOUT) continue;
        s = spec(MUTANT_DROPOUT_SHIFT, m->layers[i].name, ANX_FWD, ANX_DST, 0);
        add(FILE_ONE, mode, be, &s, m->layers[i].name, "", "dropout:mask+1");
    }
}

static int model_of(const char *path, anx_model *m)
{
    anx_st_file f;
    char err[256];
    if (anx_st_read(&f, path, err, sizeof err)) {
        fprintf(stderr, "test_golden_mutants: %s\n", err);
        return -1;
    }
    const char *k[4] = {"in_dim", "n_class", "batch", "input_hw"};
    int v[4];
    for (int i = 0; i < 4; i++) v[i] = anx_st_meta(&f, k[i]) ? atoi(anx_st_meta(&f, k[i])) : 0;
    anx_st_free(&f);
    anx_model_config cfg = {v[0], v[1], v[2], v[3]};
    if (anx_model_init(m, &cfg, err, sizeof err)) {
        fprintf(stderr, "test_golden_mutants: %s: %s\n", path, err);
        return -1;
    }
    return 0;
}

/* Is row layer/tensor FAILED in rep? */
static int names_failure(const anx_verify_report *rep, const mutant *mu)
{
    for (int i = 0; i < rep->count; i++) {
        const anx_verify_row *r = &rep->rows[i];
        if (r->verdict == ANX_FAILED && !strcmp(r->layer, mu->row_layer) &&
            (!mu->row_tensor[0] || !strcmp(r->tensor, mu->row_tensor)))
            return 1;
    }
    return 0;
}

static int declined(const anx_verify_report *rep, const mutant *mu)
{
    for (int i = 0; i < rep->count; i++)
        if (rep->rows[i].verdict == ANX_SKIPPED && !strcmp(rep->rows[i].layer, mu->row_layer)) return 1;
    return 0;
}

/* The change a known survivor must be caught at, 0 when id is not listed. */
static double known_rel(const char *id)
{
    for (int i = 0; i < g_nknown; i++)
        if (!fnmatch(g_known[i].pattern, id, 0)) return g_known[i].rel;
    return 0;
}

/* Shared by every run: ref64's answers to isolated checks depend only on the golden inputs, the
 * same for every mutant and backend (core/verify_cache.c), so each is computed once. */
static anx_verify_cache *g_cache;

typedef enum { CAUGHT, SURVIVED, KNOWN_SURVIVOR, NOT_PLANTED, HARNESS } outcome;

/* Runs the gate on one mutant (or, control != 0, the wrapper without its bug), its element
 * moved by rel x max |x| (0: --rel, else MUTANT_REL); a survivor --known lists is planted again
 * with the change listed for it. */
static outcome run_one(const mutant *mu, int control, double rel, char *detail, size_t cap)
{
    anx_model m;
    if (model_of(mu->file, &m)) return HARNESS;
    mutant_spec s = mu->spec;
    if (control) snprintf(s.layer, sizeof s.layer, "%s", "-"), s.kind = MUTANT_ELEM;
    s.seed = g_opt.seed ^ anx_rng_key(0, mu->id, 0);
    s.rel = rel > 0 ? rel : g_opt.rel;
    anx_backend mb;
    mutant_make(&mb, mu->be, &m, &s);
    const anx_backend *list[2] = {&mb, NULL};
    anx_verify_opts o = {mb.name, mu->only_layer, mu->mode, THREADS, NULL, list, 1, g_cache};
    anx_verify_report rep = {0};
    char err[200];
    if (anx_verify_golden(&rep, mu->file, &o, err, sizeof err)) {
        snprintf(detail, cap, "the gate returned 2: %s", err);
        anx_verify_report_free(&rep);
        return HARNESS;
    }
    int status = anx_verify_exit_status(&rep, NULL, NULL);
    const mutant_hit *h = mutant_hits();
    outcome out;
    if (control) out = status == 0 ? CAUGHT : HARNESS;
    else if (!h->calls) out = NOT_PLANTED;
    else if (status == 1 && names_failure(&rep, mu)) out = CAUGHT;
    else if (rel == 0 && known_rel(mu->id) > 0) out = KNOWN_SURVIVOR;
    else out = SURVIVED;
    if (out == KNOWN_SURVIVOR) {
        anx_verify_report_free(&rep);
        return run_one(mu, 0, known_rel(mu->id), detail, cap) == CAUGHT ? KNOWN_SURVIVOR : SURVIVED;
    }
    if (control && out == HARNESS) snprintf(detail, cap, "the unmutated wrapper did not pass: exit %d", status);
    else if (out == NOT_PLANTED) snprintf(detail, cap, "%s", h->why[0] ? h->why : declined(&rep, mu) ? "declined by the backend" : "never called");
    else snprintf(detail, cap, "flat %lld: %.9g -> %.9g (%d call%s)", (long long)h->index, h->before, h->after, h->calls, h->calls == 1 ? "" : "s");
    anx_verify_report_free(&rep);
    return out;
}

static int load_known(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "test_golden_mutants: --known %s: cannot open\n", path);
        return -1;
    }
    char line[200];
    int lineno = 0, bad = 0;
    while (!bad && fgets(line, sizeof line, f) && g_nknown < MAX_KNOWN) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#') continue;
        char pattern[160], tail[2];
        double rel;
        /* the change is required: a listed survivor with no claim would only be excused */
        if (sscanf(line, "%159s %lf %1s", pattern, &rel, tail) != 2 || !(rel > MUTANT_REL && rel < 1)) bad = 1;
        else snprintf(g_known[g_nknown].pattern, sizeof g_known[0].pattern, "%s", pattern), g_known[g_nknown++].rel = rel;
    }
    fclose(f);
    if (bad)
        fprintf(stderr, "test_golden_mutants: --known %s line %d: want \"PATTERN REL\" with REL in (%g, 1)\n", path,
                lineno, MUTANT_REL);
    return bad ? -1 : 0;
}

static int usage(FILE *out, int rc)
{
    fprintf(out, "usage: test_golden_mutants [--seed S] [--sample N] [--backend B] [--mode isolated|chained|all]\n"
                 "                           [--part K/N] [--only PATTERN] [--known FILE] [--rel R] [--list]\n"
                 "  Wraps every backend of the build in mutants that each plant one bug and checks that the golden\n"
                 "  gate fails naming the mutated layer and tensor (tests/golden/test_golden_mutants.c says which).\n"
                 "  --sample N: N mutants drawn with the seed (default: all); --part K/N: every N-th from the K-th;\n"
                 "  --only: fnmatch pattern of mutant ids;\n"
                 "  --known FILE: lines \"PATTERN REL\": a listed survivor must be caught at REL x max |x|;\n"
                 "  --list: ids only;\n"
                 "  --rel R: element changes of R x max |x| instead of 1e-3 (smaller: how small a change is caught).\n"
                 "  Seed: --seed, else $ANX_SWEEP_SEED, else the clock; printed.  Exit 0, 1, 2 bad arguments, 77 no\n"
                 "  backend can run here.\n");
    return rc;
}

static int parse(int argc, char **argv)
{
    const char *seed = getenv("ANX_SWEEP_SEED");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout, 1);
        if (!strcmp(a, "--list")) {
            g_opt.list = 1;
            continue;
        }
        if (!v) return fprintf(stderr, "test_golden_mutants: %s needs a value\n", a), 2;
        if (!strcmp(a, "--seed")) seed = v;
        else if (!strcmp(a, "--sample")) g_opt.sample = atoi(v);
        else if (!strcmp(a, "--backend")) g_opt.backend = v;
        else if (!strcmp(a, "--mode")) g_opt.mode = v;
        else if (!strcmp(a, "--only")) g_opt.only = v;
        else if (!strcmp(a, "--part")) {
            if (sscanf(v, "%d/%d", &g_opt.part_k, &g_opt.part_n) != 2 || g_opt.part_n < 1 || g_opt.part_k < 1 ||
                g_opt.part_k > g_opt.part_n)
                return fprintf(stderr, "test_golden_mutants: --part %s: not K/N with 1 <= K <= N\n", v), 2;
        }
        else if (!strcmp(a, "--known")) g_opt.known = v;
        else if (!strcmp(a, "--rel")) {
            char *end;
            g_opt.rel = strtod(v, &end);
            if (*end || !(g_opt.rel > 0 && g_opt.rel < 1))
                return fprintf(stderr, "test_golden_mutants: --rel %s: not a fraction in (0, 1)\n", v), 2;
        }
        else return fprintf(stderr, "test_golden_mutants: unknown argument: %s (see --help)\n", a), 2;
        i++;
    }
    g_opt.seed = seed ? strtoull(seed, NULL, 10) : (uint64_t)time(NULL) % 1000000;
    if (g_opt.known && load_known(g_opt.known)) return 2;
    return 0;
}

/* The catalogue: every mutant of every backend that can run here, in both modes; 77 when none can. */
static int build_catalogue(void)
{
    anx_model one, three;
    if (model_of(FILE_ONE, &one) || model_of(FILE_THREE, &three)) return 2;
    int runnable = 0;
    for (const anx_backend *const *b = anx_backends(); *b; b++) {
        const anx_backend *be = *b;
        if (strcmp(g_opt.backend, "all") && strcmp(g_opt.backend, be->name)) continue;
        const char *why = be->unavailable ? be->unavailable() : NULL;
        if (why) {
            printf("test_golden_mutants: %s skipped: %s\n", be->name, why);
            continue;
        }
        runnable++;
        static const char *const modes[2] = {"isolated", "chained"};
        for (int k = 0; k < 2; k++) {
            if (strcmp(g_opt.mode, "all") && strcmp(g_opt.mode, modes[k])) continue;
            add_layer_mutants(&one, modes[k], be);
            add_state_mutants(&three, modes[k], be);
            add_special_mutants(&one, modes[k], be);
        }
    }
    if (!runnable) printf("test_golden_mutants: skipped: no backend of this build can run here\n");
    return runnable ? 0 : SKIP_CODE;
}

/* Keeps the mutants that --only matches, then a seeded sample of --sample of them. */
static void choose(void)
{
    int n = 0;
    for (int i = 0; i < g_count; i++)
        if ((!g_opt.only || !fnmatch(g_opt.only, g_mut[i].id, 0)) && (!g_opt.part_n || i % g_opt.part_n == g_opt.part_k - 1))
            g_mut[n++] = g_mut[i];
    g_count = n;
    if (g_opt.sample <= 0 || g_opt.sample >= g_count) return;
    uint64_t key = anx_rng_key(g_opt.seed, "sample", 0);
    for (int i = 0; i < g_opt.sample; i++) { /* partial Fisher-Yates */
        int j = i + (int)(anx_rng_bits(key, (uint64_t)i) % (uint64_t)(g_count - i));
        mutant t = g_mut[i];
        g_mut[i] = g_mut[j], g_mut[j] = t;
    }
    g_count = g_opt.sample;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int rc = parse(argc, argv);
    if (rc) return rc == 1 ? 0 : rc;
    if ((rc = build_catalogue())) return rc;
    int total = g_count;
    choose();
    char rerun[512];
    int k = snprintf(rerun, sizeof rerun, "test_golden_mutants --seed %llu", (unsigned long long)g_opt.seed);
    if (g_opt.sample > 0) k += snprintf(rerun + k, sizeof rerun - (size_t)k, " --sample %d", g_opt.sample);
    if (g_opt.part_n) k += snprintf(rerun + k, sizeof rerun - (size_t)k, " --part %d/%d", g_opt.part_k, g_opt.part_n);
    if (strcmp(g_opt.backend, "all")) k += snprintf(rerun + k, sizeof rerun - (size_t)k, " --backend %s", g_opt.backend);
    if (strcmp(g_opt.mode, "all")) k += snprintf(rerun + k, sizeof rerun - (size_t)k, " --mode %s", g_opt.mode);
    if (g_opt.only) k += snprintf(rerun + k, sizeof rerun - (size_t)k, " --only '%s'", g_opt.only);
    if (g_opt.rel > 0) k += snprintf(rerun + k, sizeof rerun - (size_t)k, " --rel %g", g_opt.rel);
    if (g_opt.known) snprintf(rerun + k, sizeof rerun - (size_t)k, " --known %s", g_opt.known);
    printf("test_golden_mutants: seed %llu: %d of %d mutants; rerun: %s\n", (unsigned long long)g_opt.seed, g_count,
           total, rerun);
    if (g_opt.list) {
        for (int i = 0; i < g_count; i++) printf("%s\n", g_mut[i].id);
        return 0;
    }
    static const char *const names[] = {"caught", "SURVIVED", "survived, caught at its known change", "not planted", "HARNESS"};
    int counts[5] = {0};
    char detail[256];
    g_cache = anx_verify_cache_new();
    if (!g_cache) return fprintf(stderr, "test_golden_mutants: out of memory\n"), 1;
    /* a control per mode first: the wrapper without a bug passes (its code is the same for every
       backend, and golden_verify_<backend> runs each one unwrapped) */
    for (int i = 0; i < g_count; i++) {
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = !strcmp(g_mut[j].mode, g_mut[i].mode);
        if (seen) continue;
        outcome c = run_one(&g_mut[i], 1, 0, detail, sizeof detail);
        printf("control %s %s %s: %s\n", g_mut[i].mode, g_mut[i].be->name, g_mut[i].only_layer, c == CAUGHT ? "passes" : detail);
        TU_CHECKF(c == CAUGHT, "control %s %s: %s", g_mut[i].mode, g_mut[i].be->name, detail);
    }
    for (int i = 0; i < g_count; i++) {
        outcome out = run_one(&g_mut[i], 0, 0, detail, sizeof detail);
        counts[out]++;
        printf("%-100s %s  %s\n", g_mut[i].id, names[out], detail);
        TU_CHECKF(out != SURVIVED && out != HARNESS, "mutant %s %s: %s", g_mut[i].id, names[out], detail);
    }
    printf("test_golden_mutants: seed %llu: %d caught, %d SURVIVED, %d known survivors, %d not planted, %d harness errors\n",
           (unsigned long long)g_opt.seed, counts[CAUGHT], counts[SURVIVED], counts[KNOWN_SURVIVOR], counts[NOT_PLANTED],
           counts[HARNESS]);
    anx_verify_cache_free(g_cache);
    return tu_finish("test_golden_mutants");
}
