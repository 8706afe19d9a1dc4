/* train_pictures.h — the pictures of `anx train`: a batch grid with labels, the conv1 filters. */
#ifndef ANX_TRAIN_PICTURES_H
#define ANX_TRAIN_PICTURES_H

#include <stddef.h>
#include <stdint.h>

/* Up to n images x [n, 3, size, size] in [0,1] as a grid, each with a bar in its class colour
 * and the class name under it (tiny built-in font).  0, or 2 with err naming path. */
int train_write_grid(const char *path, const float *x, const int64_t *y, int n, int size,
                     const char *const *classes, char *err, size_t errlen);
/* The 96 conv1 filters w [96, 3, 11, 11] as a 12 x 8 grid of RGB tiles, each min-max scaled. */
int train_write_filters(const char *path, const float *w, int oc, int ic, int k, char *err, size_t errlen);

#endif
