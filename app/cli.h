/* cli.h — what every `anx` subcommand shares: flag parsing with one-line errors, exit codes.
 *
 * A subcommand lives in app/cmd_<name>.c and defines
 *     const anx_command anx_command_<name> = {"<name>", "<one-line summary>", run};
 * app/CMakeLists.txt finds the cmd_*.c files and lists them for the dispatcher, so adding a
 * command touches no shared file.
 */
#ifndef ANX_CLI_H
#define ANX_CLI_H

#include <stddef.h>
#include <stdint.h>

enum { ANX_EXIT_OK = 0, ANX_EXIT_FAIL = 1, ANX_EXIT_USAGE = 2 };

typedef struct anx_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} anx_command;

/* Flag table for cli_parse: --name VALUE (or --name=VALUE); FLAG_BOOL takes no value. */
typedef enum { CLI_INT, CLI_I64, CLI_FLOAT, CLI_STRING, CLI_BOOL } cli_kind;
typedef struct cli_flag {
    const char *name; /* "--batch" */
    cli_kind kind;
    void *out;        /* int*, int64_t*, float*, const char**, int* */
    long min, max;    /* CLI_INT / CLI_I64 range (inclusive); ignored when min > max */
    const char *help; /* "batch size (default 2)" */
} cli_flag;

/* Parses argv[1..] against flags; positional arguments go to positional[] (at most
 * max_positional).  On --help prints usage + flags to stdout and returns 1 (caller exits 0).
 * On a bad flag prints one line "anx <cmd>: <what is wrong>" to stderr and returns 2.
 * Returns 0 when all is well. */
int cli_parse(const char *cmd, const char *usage, int argc, char **argv, const cli_flag *flags,
              int nflags, const char **positional, int max_positional, int *npositional);

/* "anx <cmd>: " (+ "rank R of N: " under mpirun) + message to stderr, newline, returns ANX_EXIT_USAGE */
int cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Bytes of memory a new allocation can still get: MemAvailable + SwapFree of /proc/meminfo
 * (not the total: what other processes hold is not ours to use), else the free pages; 0 when
 * unknown (the caller then lets the allocation decide). */
double cli_ram_available(void);

/* Bytes a network of model m needs, in plain float32 (the backends' blocked layouts pad
 * little): the parameters with their gradients and two Adam moments, every layer's output and
 * its gradient, the dropout masks, and the batch twice (ours and the network's copy).  The
 * parameters' share goes to *param_bytes unless it is NULL. */
struct anx_model;
double cli_net_bytes(const struct anx_model *m, double *param_bytes);

/* --backend NAME: the compiled backend of that name, available on this machine, into *out; else
 * one line ("unknown backend (this build has ref, avx2, onednn)" or why it is unavailable)
 * and ANX_EXIT_USAGE.  Every command takes its backends from the registry this way. */
struct anx_backend;
int cli_backend(const char *cmd, const char *name, const struct anx_backend **out);
/* The help of a --backend flag, "<before>ref, avx2 or onednn<after>" with the names from the
 * registry, written into buf; returns buf. */
const char *cli_backend_help(char *buf, size_t cap, const char *before, const char *after);

/* Wall clock in seconds (CLOCK_MONOTONIC) */
double cli_now(void);

#endif
