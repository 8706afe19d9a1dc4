/* anx flowers: writes the synthetic 5-class flower set (core/flowers.c) as PNGs. */
#include <stdio.h>

#include "anx/data.h"
#include "cli.h"

static int run(int argc, char **argv)
{
    const char *out = NULL;
    int per_class = 100, val = -1;
    int64_t seed = 1;
    const cli_flag flags[] = {
        {"--out", CLI_STRING, &out, 0, -1, "output directory: OUT/train/<class>/NNNN.png, OUT/val/<class>/NNNN.png"},
        {"--per-class", CLI_INT, &per_class, 1, 100000, "training images per class (default 100)"},
        {"--val", CLI_INT, &val, 1, 100000, "validation images per class (default per-class/4, at least 2)"},
        {"--seed", CLI_I64, &seed, 0, -1, "seed: the set is a pure function of it (default 1)"},
    };
    int rc = cli_parse("flowers", "anx flowers --out DIR [--per-class N] [--val N] [--seed S]", argc, argv, flags,
                       (int)(sizeof flags / sizeof flags[0]), NULL, 0, NULL);
    if (rc) return rc == 1 ? ANX_EXIT_OK : rc;
    if (!out) return cli_error("flowers", "--out DIR is required");
    if (val < 0) val = per_class / 4 < 2 ? 2 : per_class / 4;
    char err[512];
    double t0 = cli_now();
    if (anx_flowers_write(out, per_class, val, (uint64_t)seed, err, sizeof err))
        return cli_error("flowers", "%s", err);
    printf("wrote %d training and %d validation images of %d classes to %s (seed %lld) in %.1f s\n",
           per_class * ANX_FLOWER_CLASSES, val * ANX_FLOWER_CLASSES, ANX_FLOWER_CLASSES, out, (long long)seed,
           cli_now() - t0);
    return ANX_EXIT_OK;
}

const anx_command anx_command_flowers = {"flowers", "write the synthetic 5-class flower set as PNGs", run};
