/* Shared by the fuzz targets: the readers under test take paths, so each input is written to a
 * private temporary file first (a tmpfs-backed /tmp keeps this cheap). */
#ifndef ANX_FUZZ_UTIL_H
#define ANX_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Writes data to a per-process temporary file with the given suffix; returns its path
 * (static storage, overwritten on the next call) or NULL. */
const char *fuzz_write_temp(const uint8_t *data, size_t size, const char *suffix);

#endif
