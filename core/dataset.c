/* ImageFolder: root/<class>/...png, as torchvision.datasets.ImageFolder finds them
 * (find_classes + make_dataset): class folders sorted by name give the labels; inside each,
 * sorted(os.walk(class_dir)) then sorted(file names). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "anx/data.h"

typedef struct strvec {
    char **v;
    int n, cap;
} strvec;

static int sv_push(strvec *s, char *str)
{
    if (!str) return -1;
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 16;
        char **v = realloc(s->v, sizeof *v * cap);
        if (!v) {
            free(str);
            return -1;
        }
        s->v = v, s->cap = cap;
    }
    s->v[s->n++] = str;
    return 0;
}

static void sv_free(strvec *s)
{
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b); /* byte order == Python's code-point order for UTF-8 */
}

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", a, b);
    return s;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode); /* stat follows links, as os.walk(followlinks=True) */
}

static int is_png_name(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcasecmp(name + n - 4, ".png") == 0;
}

/* Sorted entries of dir: sub-directories into dirs, files into files (either may be NULL). */
static int list_dir(const char *dir, strvec *dirs, strvec *files, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "%s: cannot open directory: %s", dir, strerror(errno));
        return 2;
    }
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char *full = join(dir, e->d_name);
        if (!full) {
            rc = 2;
            break;
        }
        strvec *to = is_dir(full) ? dirs : files;
        free(full);
        if (to && sv_push(to, strdup(e->d_name))) {
            rc = 2;
            break;
        }
    }
    closedir(d);
    if (rc) snprintf(err, errlen, "%s: out of memory listing it", dir);
    if (dirs && dirs->n > 1) qsort(dirs->v, dirs->n, sizeof *dirs->v, cmp_str);
    if (files && files->n > 1) qsort(files->v, files->n, sizeof *files->v, cmp_str);
    return rc;
}

/* Every directory under top (itself first), as the sorted list of their paths that
 * sorted(os.walk(top)) visits. */
static int walk_dirs(strvec *out, const char *top, char *err, size_t errlen)
{
    if (sv_push(out, strdup(top))) goto oom;
    for (int i = 0; i < out->n; i++) { /* breadth-first collection, sorted at the end */
        strvec subs = {0};
        char *cur = strdup(out->v[i]);
        if (!cur) goto oom;
        int rc = list_dir(cur, &subs, NULL, err, errlen);
        for (int k = 0; rc == 0 && k < subs.n; k++)
            if (sv_push(out, join(cur, subs.v[k]))) rc = -1;
        free(cur);
        sv_free(&subs);
        if (rc == 2) return 2;
        if (rc) goto oom;
        if (out->n > 100000) {
            snprintf(err, errlen, "%s: more than 100000 directories (a link loop?)", top);
            return 2;
        }
    }
    qsort(out->v, out->n, sizeof *out->v, cmp_str);
    return 0;
oom:
    snprintf(err, errlen, "%s: out of memory", top);
    return 2;
}

void anx_dataset_free(anx_dataset *d)
{
    if (!d) return;
    for (int i = 0; i < d->n_classes; i++) free(d->classes[i]);
    for (int i = 0; i < d->n; i++) free(d->paths[i]);
    free(d->classes);
    free(d->paths);
    free(d->labels);
    free(d->root);
    memset(d, 0, sizeof *d);
}

static int add_class_files(anx_dataset *d, strvec *paths, int cls, char *err, size_t errlen)
{
    char *cdir = join(d->root, d->classes[cls]);
    strvec dirs = {0};
    int rc = cdir ? walk_dirs(&dirs, cdir, err, errlen) : 2;
    int before = paths->n;
    for (int i = 0; rc == 0 && i < dirs.n; i++) {
        strvec files = {0};
        rc = list_dir(dirs.v[i], NULL, &files, err, errlen);
        for (int k = 0; rc == 0 && k < files.n; k++) {
            if (!is_png_name(files.v[k])) {
                d->skipped_files++;
                continue;
            }
            if (sv_push(paths, join(dirs.v[i], files.v[k]))) rc = 2;
        }
        sv_free(&files);
    }
    if (rc == 0 && paths->n == before) {
        snprintf(err, errlen, "%s: class folder has no PNG images", cdir);
        rc = 2;
    }
    sv_free(&dirs);
    free(cdir);
    return rc;
}

int anx_dataset_open(anx_dataset *d, const char *root, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    if (errlen) err[0] = '\0';
    if (!is_dir(root)) {
        snprintf(err, errlen, "%s: no such directory", root);
        return 2;
    }
    strvec cls = {0}, paths = {0};
    int *labels = NULL, rc = 0;
    d->root = strdup(root);
    rc = d->root ? list_dir(root, &cls, NULL, err, errlen) : 2;
    if (rc == 0 && cls.n == 0) {
        snprintf(err, errlen, "%s: no class folders in it (expected %s/<class>/*.png)", root, root);
        rc = 2;
    }
    if (rc) goto fail;
    d->classes = cls.v;
    d->n_classes = cls.n;
    cls.v = NULL, cls.n = 0;
    int *start = malloc(sizeof(int) * (d->n_classes + 1));
    if (!start) goto fail;
    for (int c = 0; c < d->n_classes && rc == 0; c++) {
        start[c] = paths.n;
        rc = add_class_files(d, &paths, c, err, errlen);
    }
    start[d->n_classes] = paths.n;
    if (rc == 0) labels = malloc(sizeof(int) * (paths.n ? paths.n : 1));
    if (rc == 0 && !labels) {
        snprintf(err, errlen, "%s: out of memory", root);
        rc = 2;
    }
    for (int c = 0; rc == 0 && c < d->n_classes; c++)
        for (int i = start[c]; i < start[c + 1]; i++) labels[i] = c;
    free(start);
    if (rc) goto fail;
    d->paths = paths.v;
    d->n = paths.n;
    d->labels = labels;
    return 0;
fail:
    free(labels);
    sv_free(&cls);
    sv_free(&paths);
    anx_dataset_free(d);
    if (!err[0]) snprintf(err, errlen, "%s: out of memory", root);
    return 2;
}
