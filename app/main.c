/* anx: the command-line program.  Dispatches to the subcommands in app/cmd_*.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* Why: `anx verify` and `anx step` allocate gigabytes of fresh tensors (the float64 reference,
 * per-element bounds, Adam's judged moments).  glibc serves each large block with its own mmap
 * and unmaps it on free, so the next one is faulted in again 4 KiB at a time: `anx verify
 * --backend avx2` on the one-step golden file took 5.5 M page faults, 38 s of system time and
 * 83 s in all on a 2-core Zen 5 VM.  With glibc's tunable glibc.malloc.hugetlb=1 malloc asks for
 * transparent huge pages (madvise) and the same run took 0.1 M faults and 25 s.  Tunables are
 * read only when a process starts, so anx executes itself once more with it appended to
 * GLIBC_TUNABLES.  A GLIBC_TUNABLES that already names the tunable (the user's choice, or this
 * exec's) is left alone; ANX_NO_HUGE_PAGES=1 turns the exec off; if the exec fails, anx goes on
 * with 4 KiB pages.  ANX_HUGE_PAGES_EXEC marks the second process, so that a loader which drops
 * GLIBC_TUNABLES (a setuid binary does) cannot make anx execute itself forever. */
static void exec_with_huge_pages(char **argv)
{
    const char *off = getenv("ANX_NO_HUGE_PAGES");
    const char *env = getenv("GLIBC_TUNABLES");
    char old[2048];
    if (env && strlen(env) >= sizeof old) return;
    const char *tunables = env ? strcpy(old, env) : NULL; /* setenv below may replace env's string */
    if ((off && *off && strcmp(off, "0") != 0) || getenv("ANX_HUGE_PAGES_EXEC") ||
        (tunables && strstr(tunables, "glibc.malloc.hugetlb")))
        return;
    char value[4096];
    int n = snprintf(value, sizeof value, "%s%sglibc.malloc.hugetlb=1", tunables ? tunables : "",
                     tunables && *tunables ? ":" : "");
    if (n < 0 || (size_t)n >= sizeof value || setenv("GLIBC_TUNABLES", value, 1) != 0 ||
        setenv("ANX_HUGE_PAGES_EXEC", "1", 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    unsetenv("ANX_HUGE_PAGES_EXEC");
    if (tunables) setenv("GLIBC_TUNABLES", tunables, 1);
    else unsetenv("GLIBC_TUNABLES");
}

int main(int argc, char **argv)
{
    exec_with_huge_pages(argv);
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
