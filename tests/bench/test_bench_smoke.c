/* Every registered benchmark runs once (Google Benchmark 1.7.1: --benchmark_min_time=0 means
 * one iteration) at batch 1 on every compiled backend, and each either times something with
 * finite, positive counters or is skipped with its reason ("skipped: ...").  A "failed: ..."
 * (a kernel that leaves NaN in its output, a step whose loss is not finite, out of memory) or
 * a benchmark that did not report at all fails the test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "anx/backend.h"
#include "bench_run.h"
#include "testutil.h"

#define ARGS " --batches=1 --ref_batches=1 --threads=2"

static double counter(const cJSON *b, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int is_layer(const char *name)
{
    return strstr(name, "_fwd/") || strstr(name, "_bwd_data/") || strstr(name, "_bwd_weights/");
}

int main(void)
{
    char path[] = "/tmp/anx_bench_smoke_XXXXXX";
    int fd = mkstemp(path);
    TU_CHECKF(fd >= 0, "mkstemp %s", path);
    if (fd < 0) return tu_finish("test_bench_smoke");
    close(fd);

    int status;
    char *listing = tb_run(TB_BENCH ARGS " --benchmark_list_tests", &status);
    TU_CHECKF(listing && status == 0, "listing: status %d", status);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             TB_BENCH ARGS " --benchmark_min_time=0 --benchmark_out_format=json --benchmark_out=%s >/dev/null", path);
    char *out = tb_run(cmd, &status);
    TU_CHECKF(out && status == 0, "%s: status %d", cmd, status);
    free(out);
    char *json = tb_read_file(path);
    unlink(path);
    cJSON *root = json ? cJSON_Parse(json) : NULL;
    TU_CHECKF(root != NULL, "%s is not JSON", path);
    const cJSON *benches = cJSON_GetObjectItemCaseSensitive(root, "benchmarks");
    TU_CHECK(cJSON_IsArray(benches));

    int ran = 0, skipped = 0, ran_layers = 0, listed = 0;
    for (char *line = listing, *nl; line && *line; line = nl + 1) {
        if (!(nl = strchr(line, '\n'))) break;
        *nl = '\0';
        listed++;
        const cJSON *b = NULL, *it;
        cJSON_ArrayForEach(it, benches)
        {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(it, "name");
            if (cJSON_IsString(n) && strcmp(n->valuestring, line) == 0) b = it;
        }
        TU_CHECKF(b != NULL, "%s: listed but not in the JSON report", line);
        if (!b) continue;
        const cJSON *err = cJSON_GetObjectItemCaseSensitive(b, "error_occurred");
        if (cJSON_IsTrue(err)) {
            const cJSON *msg = cJSON_GetObjectItemCaseSensitive(b, "error_message");
            const char *m = cJSON_IsString(msg) ? msg->valuestring : "(no message)";
            TU_CHECKF(strncmp(m, "skipped: ", 9) == 0, "%s: %s", line, m);
            skipped++;
            continue;
        }
        double t = counter(b, "real_time"), it_count = counter(b, "iterations");
        TU_CHECKF(t > 0 && isfinite(t) && it_count >= 1, "%s: real_time %g, iterations %g", line, t, it_count);
        if (is_layer(line) || strncmp(line, "step/", 5) == 0 || strncmp(line, "fma_peak/", 9) == 0) {
            double f = counter(b, "FLOP/s");
            TU_CHECKF(f > 0 && isfinite(f), "%s: FLOP/s %g", line, f);
        }
        if (strncmp(line, "conv2d_", 7) == 0 && isfinite(counter(b, "peak%"))) {
            /* the padding's products left out: less work than DESIGN's count, never more */
            double pk = counter(b, "peak%"), pu = counter(b, "peak%_unpadded");
            TU_CHECKF(pu > 0 && pu <= pk, "%s: peak%%_unpadded %g, peak%% %g", line, pu, pk);
        }
        if (is_layer(line) || strncmp(line, "adam/", 5) == 0 || strncmp(line, "triad/", 6) == 0) {
            double by = counter(b, "bytes/s");
            TU_CHECKF(by > 0 && isfinite(by), "%s: bytes/s %g", line, by);
        }
        ran++;
        ran_layers += is_layer(line) != 0;
    }
    printf("smoke: %d listed, %d ran (%d layer benchmarks), %d skipped with a reason\n", listed, ran, ran_layers,
           skipped);
    TU_CHECKF(ran_layers > 0, "no layer benchmark ran at all");
    TU_CHECKF(cJSON_GetArraySize(benches) == listed, "report has %d entries for %d listed benchmarks",
              cJSON_GetArraySize(benches), listed);
    cJSON_Delete(root);
    free(json);
    free(listing);
    return tu_finish("test_bench_smoke");
}
