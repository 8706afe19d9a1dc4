/* cmake/asan_huge_pages.c — linked into every program of the sanitizer build (ANX_SANITIZE) only.
 *
 * Why: under AddressSanitizer glibc's malloc is not used, so the glibc.malloc.hugetlb=1 tunable
 * that app/main.c sets has no effect, and every large block (a 150 MB fc6 weight, its Adam
 * moments, a 700 MB checkpoint buffer) is a fresh mmap faulted in 4 KiB at a time, and so is its
 * shadow (one byte per 8, read by ASan's checks on every memset/memcpy).  On the 2-core Zen 5 VM
 * one `anx train` step with a checkpoint under ASan took 0.8 M page faults and 10 s of system time
 * in 15 s; asking for transparent huge pages on those blocks and their shadow (the kernel's
 * "madvise" mode, the default here) gave 0.15 M faults and 5.5 s.  This changes page sizes only:
 * ASan still sees every allocation and access.
 *
 * How: ASan calls a hook after each allocation (__sanitizer_install_malloc_and_free_hooks); for
 * blocks of 4 MiB and more it advises MADV_HUGEPAGE on the whole 2 MiB pages inside the block
 * and inside its shadow.  madvise failing only means 4 KiB pages, as before. */
#define _DEFAULT_SOURCE /* madvise and MADV_HUGEPAGE: Linux, not POSIX */
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

/* From the sanitizer runtime (sanitizer/allocator_interface.h and asan_interface.h, which gcc 12
 * does not ship). */
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));
void __asan_get_shadow_mapping(size_t *shadow_scale, size_t *shadow_offset);

enum { HUGE_PAGE = 2 << 20, MIN_BLOCK = 4 << 20 };

static size_t shadow_scale, shadow_offset;

/* MADV_HUGEPAGE on the whole huge pages inside [lo, hi). */
static void advise_huge(uintptr_t lo, uintptr_t hi)
{
    const uintptr_t a = (lo + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1), b = hi & ~(uintptr_t)(HUGE_PAGE - 1);
    if (b > a) (void)madvise((void *)a, b - a, MADV_HUGEPAGE);
}

static void after_malloc(const volatile void *p, size_t bytes)
{
    if (bytes < MIN_BLOCK) return;
    const uintptr_t lo = (uintptr_t)p, hi = lo + bytes;
    advise_huge(lo, hi);
    advise_huge((lo >> shadow_scale) + shadow_offset, (hi >> shadow_scale) + shadow_offset);
}

static void before_free(const volatile void *p) { (void)p; }

__attribute__((constructor)) static void install_huge_page_hook(void)
{
    __asan_get_shadow_mapping(&shadow_scale, &shadow_offset);
    __sanitizer_install_malloc_and_free_hooks(after_malloc, before_free);
}
