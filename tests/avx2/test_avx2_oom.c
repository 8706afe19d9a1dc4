/* test_avx2_oom: an avx2 kernel whose workspace cannot be allocated returns a status naming the
 * workspace (the library never exits; the CLI turns the status into one line and exit status 2,
 * which the child does here the same way), not an abort() or a crash.
 *
 * The test runs itself as a child under RLIMIT_AS 256 MiB (tu_spawn) and there calls the conv
 * backward-data with a shape whose transposed weights need 2.4 GB (the forward has no workspace
 * since the backend's weight layout is the stream its tile reads).  The workspace is the kernel's first
 * allocation, before it reads any tensor, so the child passes no tensors at all.  Skipped under
 * the sanitizers (ASan's shadow memory does not fit under the limit) and on a CPU without AVX2.
 */
#include <stdio.h>
#include <string.h>

#define SV_PORTABLE 1 /* only the declarations: the kernels were compiled with -mavx2 -mfma */
#include "fast/simd/isa_avx2.h"
#include "spawn.h"
#include "testutil.h"

#define SKIP_CODE 77

static int child(void)
{
    /* oc 8192 x ic 8192 x 3 x 3 floats of transposed weights: 2.4 GB (stride 1, ic % 8 == 0:
       the tile path, whose transpose is its first allocation) */
    const sv_conv cv = {1, 8192, 3, 3, 8192, 1, 1, 3, 3, 1, 0};
    anx_status st = anx_f32_conv2d_bwd_data__avx2_3x32(NULL, NULL, NULL, &cv, 1);
    if (st) {
        fprintf(stderr, "anx: %s\n", st);
        return 2;
    }
    printf("the kernel returned success without its workspace\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child") == 0) return child();
    const char *why = anx_backend_avx2.unavailable ? anx_backend_avx2.unavailable() : NULL;
    if (why) {
        printf("test_avx2_oom: skipped: %s\n", why);
        return SKIP_CODE;
    }
    if (tu_sanitized()) {
        printf("test_avx2_oom: skipped: RLIMIT_AS under the sanitizers (their shadow memory does not fit)\n");
        return SKIP_CODE;
    }
    const char *args[] = {"--child", NULL};
    tu_run r = tu_spawn(&(tu_spawn_opts){.bin = ANX_BINARY_DIR "/tests/avx2/test_avx2_oom", .as_bytes = 256LL << 20},
                        args);
    TU_CHECKF(r.status == 2, "exit status %d (signal %d), want 2; stderr: %s", r.status, r.signal, r.err);
    TU_CHECKF(r.err_lines == 1, "%d lines on stderr, want 1: %s", r.err_lines, r.err);
    TU_CHECKF(strstr(r.err, "out of memory for conv weights transposed for bwd_data") != NULL, "stderr: %s", r.err);
    TU_CHECKF(strstr(r.out, "returned") == NULL, "the kernel returned without its workspace: %s", r.out);
    tu_run_free(&r);
    return tu_finish("test_avx2_oom");
}
