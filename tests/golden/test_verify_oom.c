/* test_verify_oom: memory running out inside the gate gives a status naming what, never a crash.
 *
 * Every entry point of core/verify*.c that allocates runs its work under v_guarded, whose frame
 * is the only place v_oom may jump to (verify_internal.h).  Before, v_oom jumped through a
 * thread-local pointer that only anx_verify_golden set: vref64_run called directly (as
 * tests/ref64 does) jumped through NULL when memory ran out.  Here the address space is capped
 * (RLIMIT_AS) at what the loaded golden file holds plus LIMIT_HEADROOM, far below the ~2 GB of
 * the float64 replay, and:
 *   vref64_run called directly         returns -1, err "out of memory for ...", r empty;
 *   anx_verify_golden (replay nested)  returns 2, err "<file>: out of memory for a float64 reference
 *                                      buffer ..." (the replay's guard passes it on to the gate's).
 * Under ASan the cap cannot be used (its shadow memory reserves terabytes): exit 77.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "anx/verify.h"
#include "core/verify_internal.h"
#include "testutil.h"

#define GOLDEN ANX_SOURCE_DIR "/data/golden/alexnet_in3_c5_b2_step1.safetensors"
/* room above the loaded file for the kernels' threads and a second load (~300 MB: the init of
   58 M parameters), still far below the replay's ~2 GB */
#define LIMIT_HEADROOM (1024.0 * 1048576.0)

#if defined(__SANITIZE_ADDRESS__)
#define ANX_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ANX_ASAN 1
#endif
#endif

/* This process's address space in bytes (VmSize), or 0. */
static double vm_size(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %lf kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb * 1024.0;
}

int main(void)
{
#ifdef ANX_ASAN
    printf("test_verify_oom: skipped: RLIMIT_AS cannot cap the address space under ASan\n");
    return 77;
#endif
    setvbuf(stdout, NULL, _IOLBF, 0);
    vgold g;
    memset(&g, 0, sizeof g);
    char err[512];
    int rc = vgold_load(&g, GOLDEN, err, sizeof err);
    TU_CHECKF(rc == 0, "load: %s", err);
    double vm = vm_size();
    struct rlimit old, cap;
    if (rc || vm <= 0 || getrlimit(RLIMIT_AS, &old)) {
        printf("test_verify_oom: skipped: cannot read or cap the address space\n");
        return rc ? 1 : 77;
    }
    cap = old;
    cap.rlim_cur = (rlim_t)(vm + LIMIT_HEADROOM);
    TU_CHECKF(setrlimit(RLIMIT_AS, &cap) == 0, "setrlimit RLIMIT_AS %.0f MiB", (vm + LIMIT_HEADROOM) / 1048576.0);
    printf("test_verify_oom: address space capped at %.0f MiB (%.0f in use)\n", (vm + LIMIT_HEADROOM) / 1048576.0,
           vm / 1048576.0);

    vref64 r;
    err[0] = 0;
    rc = vref64_run(&r, &g, 2, err, sizeof err);
    printf("vref64_run: %d: %s\n", rc, err);
    TU_CHECKF(rc == -1, "vref64_run under the cap returned %d, want -1", rc);
    TU_CHECKF(strstr(err, "out of memory for ") == err, "vref64_run's err \"%s\" does not say out of memory", err);
    TU_CHECKF(r.count == 0 && r.t == NULL, "vref64_run failed but kept %d tensors", r.count);
    vref64_free(&r);

    /* room again for the gate's own load of the file (vref64_run's buffers are left to the
       process), so that it is the nested replay that runs out and passes it on (v_oom_again) */
    vm = vm_size();
    cap.rlim_cur = (rlim_t)(vm + LIMIT_HEADROOM);
    TU_CHECKF(setrlimit(RLIMIT_AS, &cap) == 0, "setrlimit RLIMIT_AS %.0f MiB", (vm + LIMIT_HEADROOM) / 1048576.0);
    anx_verify_opts o = {anx_backend_reference()->name, "Conv2d-1", "isolated", 2, NULL, NULL, 0, NULL};
    anx_verify_report rep = {0};
    err[0] = 0;
    rc = anx_verify_golden(&rep, GOLDEN, &o, err, sizeof err);
    printf("anx_verify_golden: %d: %s\n", rc, err);
    TU_CHECKF(rc == 2, "anx_verify_golden under the cap returned %d, want 2", rc);
    TU_CHECKF(strstr(err, GOLDEN ": out of memory for a float64 reference") == err, "anx_verify_golden's err \"%s\" does "
              "not name the file and the replay's buffer", err);
    anx_verify_report_free(&rep);

    setrlimit(RLIMIT_AS, &old);
    vgold_free(&g);
    return tu_finish("test_verify_oom");
}
