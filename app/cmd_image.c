/* anx image FILE --dump OUT: one image as the training pipeline feeds it to the model
 * (decode, RGB, ToTensor, Resize), stored under the key `image` as [3, size, size]. */
#include <stdio.h>
#include <stdlib.h>

#include "anx/data.h"
#include "anx/safetensors.h"
#include "cli.h"

static int run(int argc, char **argv)
{
    const char *dump = NULL, *pos[1];
    int size = 227, antialias = 0, npos = 0;
    const cli_flag flags[] = {
        {"--size", CLI_INT, &size, 1, 4096, "Resize target, size x size (default 227)"},
        {"--antialias", CLI_BOOL, &antialias, 0, -1, "antialiased resize (torchvision >= 0.17 default)"},
        {"--dump", CLI_STRING, &dump, 0, -1, "write the tensor to OUT.safetensors (key `image`, [3,size,size])"},
    };
    int rc = cli_parse("image", "anx image FILE [--size 227] [--antialias] --dump OUT.safetensors", argc, argv, flags,
                       (int)(sizeof flags / sizeof flags[0]), pos, 1, &npos);
    if (rc) return rc == 1 ? ANX_EXIT_OK : rc;
    if (npos != 1) return cli_error("image", "expects one FILE (see anx image --help)");
    char err[512];
    anx_image img;
    if (anx_png_read(&img, pos[0], err, sizeof err)) return cli_error("image", "%s", err);
    int w = img.w, h = img.h;
    anx_image_free(&img);
    float *x = malloc(sizeof(float) * 3 * (size_t)size * size); /* [3, size, size] */
    if (!x) return cli_error("image", "out of memory");
    if (anx_image_load(x, pos[0], size, antialias, err, sizeof err)) {
        free(x);
        return cli_error("image", "%s", err);
    }
    double sum = 0, mn = 1e30, mx = -1e30;
    for (size_t i = 0; i < 3 * (size_t)size * size; i++) {
        sum += x[i];
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    printf("%s: %dx%d -> [3, %d, %d] (antialias %s): min %.6f max %.6f mean %.6f\n", pos[0], w, h, size, size,
           antialias ? "on" : "off", mn, mx, sum / (3.0 * size * size));
    rc = ANX_EXIT_OK;
    if (dump) {
        anx_st_writer *wr = anx_st_writer_new();
        const int64_t shape[3] = {3, size, size};
        if (!wr || anx_st_writer_add(wr, "image", ANX_DTYPE_F32, shape, 3, x) ||
            anx_st_writer_meta(wr, "source", pos[0]) ||
            anx_st_writer_meta(wr, "transform", antialias ? "ToTensor,Resize(antialias=True)" : "ToTensor,Resize(antialias=False)")) {
            rc = cli_error("image", "%s: out of memory building the dump", dump);
        } else if (anx_st_writer_commit(wr, dump, err, sizeof err)) {
            rc = cli_error("image", "%s", err);
        } else {
            printf("wrote %s\n", dump);
        }
        anx_st_writer_free(wr);
    }
    free(x);
    return rc;
}

const anx_command anx_command_image = {"image", "one image as the training pipeline sees it (--dump OUT)", run};
