#include "fuzz_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char path[256];

static void remove_temp(void) { unlink(path); }

const char *fuzz_write_temp(const uint8_t *data, size_t size, const char *suffix)
{
    static int registered;
    if (!registered) registered = !atexit(remove_temp);
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/anx_fuzz_%ld%s", dir && *dir ? dir : "/tmp", (long)getpid(), suffix);
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    size_t w = fwrite(data, 1, size, f);
    if (fclose(f) != 0 || w != size) return NULL;
    return path;
}
