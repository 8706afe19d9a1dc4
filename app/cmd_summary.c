/* anx summary: the table torchsummary's summary(model, (in_dim, input, input), batch_size)
 * prints for the tutorial's Alexnet, row for row and digit for digit.
 *
 * torchsummary (sksq96/pytorch-summary, torchsummary.py) formats each row with
 * "{:>20}  {:>25} {:>15}" and computes, in this arithmetic:
 *   input  MB = abs(prod(input_size) * batch * 4. / 1024**2)            numpy float64
 *   fwd/bwd MB = abs(2. * total_output * 4. / 1024**2)                   float64; total_output is
 *                the sum over rows of prod(output_shape), batch included
 *   params MB = abs(total_params * 4. / 1024**2)                         total_params is an int64
 *                torch tensor, so this is a float32 tensor
 *   total  MB = params + fwd/bwd + input                                 float32 tensor adds
 * We redo the float32 steps in float so that a rounding tie prints as torchsummary prints it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "anx/model.h"
#include "cli.h"

static const char *const RULE = "----------------------------------------------------------------";
static const char *const DOUBLE_RULE = "================================================================";

/* 62378344 -> "62,378,344" (Python's "{0:,}") */
static const char *with_commas(char *buf, size_t cap, unsigned long long v)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%llu", v);
    size_t k = 0;
    for (int i = 0; i < n && k + 2 < cap; i++) {
        if (i && (n - i) % 3 == 0) buf[k++] = ',';
        buf[k++] = digits[i];
    }
    buf[k] = '\0';
    return buf;
}

/* Output shape as torchsummary prints str(list): "[1, 96, 55, 55]"; after the flatten
 * (Linear-14 on) the activations are [batch, features]. */
static const char *shape_text(char *buf, size_t cap, const anx_layer_desc *l, int flat)
{
    if (flat) snprintf(buf, cap, "[%d, %d]", l->n, l->oc);
    else snprintf(buf, cap, "[%d, %d, %d, %d]", l->n, l->oc, l->oh, l->ow);
    return buf;
}

static unsigned long long layer_params(const anx_model *m, int layer)
{
    unsigned long long n = 0;
    for (int p = 0; p < ANX_NUM_PARAMS; p++)
        if (m->params[p].layer == layer) n += m->params[p].count;
    return n;
}

static void print_summary(FILE *out, const anx_model *m)
{
    const int linear14 = anx_model_find_layer(m, "Linear-14");
    const anx_model_config *c = &m->cfg;
    char shape[64], num[32];
    unsigned long long total_params = 0, total_output = 0;

    fprintf(out, "%s\n%20s  %25s %15s\n%s\n", RULE, "Layer (type)", "Output Shape", "Param #", DOUBLE_RULE);
    for (int i = 0; i < ANX_NUM_LAYERS; i++) {
        const anx_layer_desc *l = &m->layers[i];
        int flat = i >= linear14;
        unsigned long long np = layer_params(m, i);
        fprintf(out, "%20s  %25s %15s\n", l->name, shape_text(shape, sizeof shape, l, flat),
                with_commas(num, sizeof num, np));
        total_params += np;
        total_output += (unsigned long long)l->n * (unsigned long long)l->oc * (unsigned long long)l->oh *
                        (unsigned long long)l->ow;
    }
    const double mib = 1024.0 * 1024.0;
    double input_mb = (double)c->in_dim * c->input_hw * c->input_hw * c->batch * 4.0 / mib;
    double output_mb = 2.0 * (double)total_output * 4.0 / mib;
    float params_mb = (float)total_params * 4.0f / (float)mib;
    float total_mb = (params_mb + (float)output_mb) + (float)input_mb;

    fprintf(out, "%s\n", DOUBLE_RULE);
    fprintf(out, "Total params: %s\n", with_commas(num, sizeof num, total_params));
    fprintf(out, "Trainable params: %s\n", with_commas(num, sizeof num, total_params));
    fprintf(out, "Non-trainable params: 0\n%s\n", RULE);
    fprintf(out, "Input size (MB): %0.2f\n", input_mb);
    fprintf(out, "Forward/backward pass size (MB): %0.2f\n", output_mb);
    fprintf(out, "Params size (MB): %0.2f\n", (double)params_mb);
    fprintf(out, "Estimated Total Size (MB): %0.2f\n", (double)total_mb);
    fprintf(out, "%s\n", RULE);
    /* summary() print()s the string that already ends in a newline: one empty line follows */
    fprintf(out, "\n");
}

static int run(int argc, char **argv)
{
    anx_model_config cfg = {.in_dim = 3, .n_class = 1000, .batch = 1, .input_hw = 227};
    const cli_flag flags[] = {
        {"--in-dim", CLI_INT, &cfg.in_dim, 1, 4096, "input channels (default 3)"},
        {"--classes", CLI_INT, &cfg.n_class, 1, 1 << 20, "classes (default 1000)"},
        {"--input", CLI_INT, &cfg.input_hw, 1, 1 << 16, "input height = width (default 227)"},
        {"--batch", CLI_INT, &cfg.batch, 1, 1 << 20, "batch size shown in the shapes (default 1)"},
    };
    int rc = cli_parse("summary", "anx summary [--in-dim 3] [--classes 1000] [--input 227] [--batch 1]", argc,
                       argv, flags, (int)(sizeof flags / sizeof flags[0]), NULL, 0, NULL);
    if (rc) return rc == 1 ? ANX_EXIT_OK : rc;
    anx_model m;
    char err[256];
    if (anx_model_init(&m, &cfg, err, sizeof err)) return cli_error("summary", "%s", err);
    print_summary(stdout, &m);
    if (fflush(stdout) != 0) return cli_error("summary", "writing to stdout failed");
    return ANX_EXIT_OK;
}

const anx_command anx_command_summary = {"summary", "the torchsummary table of Alexnet(in_dim, n_class)", run};
