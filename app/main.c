/* anx: the command-line program.  Dispatches to the subcommands in app/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.gen.h" /* written by app/CMakeLists.txt: ANX_COMMANDS(X) over cmd_*.c */

#define ANX_X_DECL(name) extern const anx_command anx_command_##name;
ANX_COMMANDS(ANX_X_DECL)
#undef ANX_X_DECL

static const anx_command *const commands[] = {
#define ANX_X_PTR(name) &anx_command_##name,
    ANX_COMMANDS(ANX_X_PTR)
#undef ANX_X_PTR
};
static const int ncommands = (int)(sizeof commands / sizeof commands[0]);

static void usage(FILE *out)
{
    fprintf(out, "usage: anx COMMAND [flags]   (anx COMMAND --help for its flags)\n\n"
                 "AlexNet training step on interchangeable CPU backends, verified against PyTorch.\n\n"
                 "commands:\n");
    for (int i = 0; i < ncommands; i++)
        fprintf(out, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return ANX_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return ANX_EXIT_OK;
    }
    for (int i = 0; i < ncommands; i++)
        if (strcmp(argv[1], commands[i]->name) == 0) return commands[i]->run(argc - 1, argv + 1);
    fprintf(stderr, "anx: unknown command '%s' (see anx --help)\n", argv[1]);
    return ANX_EXIT_USAGE;
}
