/* test_registry: the registry is what shared code may rely on instead of names.
 *  - exactly one compiled backend is the reference (is_reference), anx_backend_reference() is it,
 *    and it runs on any machine (the others are compared with it);
 *  - names are unique and non-empty, anx_backend_find finds each entry by its name;
 *  - anx_backend_names lists them in registry order (what --help and the errors print);
 *  - peak_isa is one of the enum's values; a stub (a backend that could not be built) has only
 *    name and unavailable(), so it ranks 0 and is not the reference.
 */
#include <stdio.h>
#include <string.h>

#include "anx/backend.h"
#include "testutil.h"

int main(void)
{
    const anx_backend *const *list = anx_backends();
    int n = 0, refs = 0;
    const anx_backend *ref = NULL;
    char want[512] = "";
    size_t len = 0;
    for (const anx_backend *const *b = list; *b; b++, n++) {
        const anx_backend *be = *b;
        TU_CHECKF(be->name && be->name[0], "entry %d has no name", n);
        if (!be->name) continue;
        TU_CHECKF(anx_backend_find(be->name) == be, "anx_backend_find(\"%s\") is not its entry", be->name);
        for (const anx_backend *const *c = list; c != b; c++)
            TU_CHECKF(strcmp((*c)->name, be->name) != 0, "two entries named %s", be->name);
        if (be->is_reference) refs++, ref = be;
        TU_CHECKF((unsigned)be->peak_isa <= ANX_PEAK_AVX512, "%s: peak_isa %d is no anx_peak_isa", be->name,
                  (int)be->peak_isa);
        if (!be->exec[ANX_OP_CONV2D][ANX_FWD]) /* a stub: only name and unavailable() */
            TU_CHECKF(be->train_rank == 0 && !be->is_reference && be->unavailable && be->unavailable(),
                      "%s: an entry without execs must be an unavailable stub of rank 0", be->name);
        len += (size_t)snprintf(want + len, sizeof want - len, "%s%s", n ? ", " : "", be->name);
    }
    TU_CHECKF(n >= 1, "the registry is empty");
    TU_CHECKF(refs == 1, "%d backends say is_reference, want exactly 1", refs);
    TU_CHECKF(anx_backend_reference() == ref, "anx_backend_reference() is not the entry with is_reference");
    if (ref) {
        const char *why = ref->unavailable ? ref->unavailable() : NULL;
        TU_CHECKF(why == NULL, "the reference %s is unavailable here: %s", ref->name, why);
        TU_CHECKF(ref->adam != NULL, "the reference %s has no Adam", ref->name);
    }
    char got[512];
    anx_backend_names(got, sizeof got, ", ", ", ");
    TU_CHECKF(strcmp(got, want) == 0, "anx_backend_names: \"%s\", want \"%s\"", got, want);
    printf("test_registry: %d backends: %s (reference %s)\n", n, got, ref ? ref->name : "none");
    return tu_finish("test_registry");
}
