/* anx verify: every layer, tensor and backend against the golden data (docs/verify.md).
 * Exit 0 when nothing FAILED (and the gate of --require / --strict holds), 1 otherwise, 2 on
 * bad input. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/backend.h"
#include "anx/verify.h"
#include "cli.h"

#ifndef ANX_GOLDEN_DIR
#define ANX_GOLDEN_DIR "data/golden"
#endif

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The *.safetensors of dir, sorted; NULL-terminated list in *out.  Count, or -1. */
static int list_goldens(const char *dir, char ***out)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    char **list = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 13 || strcmp(e->d_name + len - 12, ".safetensors")) continue;
        char **grown = realloc(list, (size_t)(n + 2) * sizeof *list);
        size_t plen = strlen(dir) + len + 2;
        char *path = malloc(plen);
        if (!grown || !path) {
            free(path);
            free(grown ? grown : list);
            closedir(d);
            return -1;
        }
        list = grown;
        snprintf(path, plen, "%s/%s", dir, e->d_name);
        list[n++] = path;
        list[n] = NULL;
    }
    closedir(d);
    if (n) qsort(list, (size_t)n, sizeof *list, by_name);
    *out = list;
    return n;
}

static int run(int argc, char **argv)
{
    const char *backend = "all", *golden = NULL, *json = NULL, *layer = NULL, *mode = "all";
    const char *require = NULL;
    int threads = 0, quiet = 0, strict = 0;
    char backend_help[400];
    const cli_flag flags[] = {
        {"--backend", CLI_STRING, &backend, 0, -1, cli_backend_help(backend_help, sizeof backend_help, "all (default), ", "")},
        {"--golden", CLI_STRING, &golden, 0, -1, "one golden file (default: every *.safetensors in " ANX_GOLDEN_DIR ")"},
        {"--json", CLI_STRING, &json, 0, -1, "also write the whole table as JSON to this file"},
        {"--layer", CLI_STRING, &layer, 0, -1, "only this layer (Conv2d-4, CrossEntropyLoss, Adam)"},
        {"--mode", CLI_STRING, &mode, 0, -1, "all (default), isolated or chained"},
        {"--threads", CLI_INT, &threads, 0, 4096, "threads for the kernels (default: OpenMP's)"},
        {"--quiet", CLI_BOOL, &quiet, 0, -1, "no progress lines on stderr"},
        {"--require", CLI_STRING, &require, 0, -1,
         "BACKEND[,BACKEND...]: exit 1 when one of them is SKIPPED as a whole (not built, CPU lacks its ISA, "
         "library missing), naming why"},
        {"--strict", CLI_BOOL, &strict, 0, -1, "also exit 1 on any MISTRUSTED row and on any SKIPPED row of a required backend"},
    };
    char names[256], usage[512];
    snprintf(usage, sizeof usage,
             "anx verify [--backend all|%s] [--golden FILE] [--json OUT] [--layer L] [--mode all|isolated|chained] "
             "[--threads T] [--require B[,B...]] [--strict]",
             anx_backend_names(names, sizeof names, "|", "|"));
    int rc = cli_parse("verify", usage,
                       argc, argv, flags, (int)(sizeof flags / sizeof flags[0]), NULL, 0, NULL);
    if (rc == 1) return ANX_EXIT_OK;
    if (rc) return ANX_EXIT_USAGE;

    char **files = NULL;
    char *one[2] = {(char *)golden, NULL};
    int nfiles = 1;
    if (golden) {
        files = one;
    } else {
        nfiles = list_goldens(ANX_GOLDEN_DIR, &files);
        if (nfiles <= 0) return cli_error("verify", "%s: no golden *.safetensors there", ANX_GOLDEN_DIR);
    }
    anx_verify_opts o = {backend, layer, mode, threads, quiet ? NULL : stderr, NULL, 0, NULL};
    anx_verify_gate gate = {require, strict};
    anx_verify_report rep = {0};
    char err[512];
    rc = anx_verify_gate_check(&gate, &o, err, sizeof err);
    if (rc) {
        if (!golden) {
            for (int i = 0; i < nfiles; i++) free(files[i]);
            free(files);
        }
        return cli_error("verify", "%s", err);
    }
    for (int i = 0; i < nfiles && !rc; i++) rc = anx_verify_golden(&rep, files[i], &o, err, sizeof err);
    if (!golden) {
        for (int i = 0; i < nfiles; i++) free(files[i]);
        free(files);
    }
    if (rc) {
        anx_verify_report_free(&rep);
        return cli_error("verify", "%s", err);
    }
    anx_verify_print(&rep, stdout);
    int status = anx_verify_exit_status(&rep, &gate, stdout);
    if (json && anx_verify_write_json(&rep, json, status, err, sizeof err)) {
        anx_verify_report_free(&rep);
        return cli_error("verify", "%s", err);
    }
    anx_verify_report_free(&rep);
    return status ? ANX_EXIT_FAIL : ANX_EXIT_OK;
}

const anx_command anx_command_verify = {"verify", "every layer, tensor and backend against the PyTorch golden data",
                                        run};
