/* Seeded broken allocators for `memspec check --target malloc:/path/to/lib.so`.
 *
 * The library wraps the C library's malloc family (found with dlsym(RTLD_NEXT)) and
 * breaks exactly one law, chosen when it is built:
 *
 *   -DBUG_OVERLAP        a small request is served from the unused second half of the
 *                        block handed out just before it (live blocks overlap)
 *   -DBUG_MISALIGN       memalign/posix_memalign/aligned_alloc with an alignment of 4096
 *                        or more return a pointer 64 bytes past an aligned one
 *   -DBUG_REALLOC_TAIL   realloc that moves a block copies all but its last 8 bytes
 *   -DBUG_CALLOC_DIRTY   calloc does not clear the block (fresh pages are zero anyway,
 *                        so only reused memory shows it)
 *   -DBUG_HANG           malloc(666) never returns (the harness must time it out)
 *   (none)               a faithful wrapper: must pass
 *
 * It is preloaded into memspec's exec'd child exactly as jemalloc & co. are.  The bug acts
 * only on the calls of the program under test, which the child makes through ctypes (the
 * caller is libffi), never on the Python interpreter's own: a broken interpreter would
 * only crash.  Pointers the bugs make up (not returned by the real allocator) are
 * remembered, so that freeing one never reaches the real allocator: a bug is caught by
 * the judge, not by a crash.
 *
 *   gcc -shared -fPIC -O1 -DBUG_OVERLAP -o overlap.so malloc_bugs.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static void *(*real_memalign)(size_t, size_t);
static size_t (*real_usable)(void *);

/* While dlsym runs (it may allocate), serve from a small static pool. */
static char boot[4096] __attribute__((aligned(16)));
static size_t boot_used;
static int resolving;

/* Whether the caller (a return address) is libffi, i.e. the program's ctypes call. */
static int from_program(void *ret) {
    Dl_info info;
    return !resolving && dladdr(ret, &info) && info.dli_fname && strstr(info.dli_fname, "libffi");
}
#define PROGRAM from_program(__builtin_return_address(0))

static int in_boot(void *p) { return (char *)p >= boot && (char *)p < boot + sizeof boot; }

static void *boot_alloc(size_t n) {
    size_t off = (boot_used + 15) & ~(size_t)15;
    if (off + n > sizeof boot) return NULL;
    boot_used = off + n;
    return memset(boot + off, 0, n);
}

static void resolve(void) {
    if (real_malloc || resolving) return;
    resolving = 1;
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    real_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    real_usable = (size_t (*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    resolving = 0;
}

/* Pointers a bug made up: the pointer, the real block behind it (NULL: none) and its size. */
struct fake { char *ptr; void *base; size_t size; };
static struct fake fakes[256];

static struct fake *fake_of(void *p) {
    for (size_t i = 0; i < sizeof fakes / sizeof *fakes; i++)
        if (p && fakes[i].ptr == p) return &fakes[i];
    return NULL;
}

static __attribute__((unused)) void *remember(char *p, void *base, size_t size) {
    struct fake *f = fake_of(NULL);
    for (size_t i = 0; !f && i < sizeof fakes / sizeof *fakes; i++)
        if (!fakes[i].ptr) f = &fakes[i];
    if (!f) return p;            /* table full: a leak, never a crash */
    f->ptr = p; f->base = base; f->size = size;
    return p;
}

#ifdef BUG_OVERLAP
static char *last;               /* the block malloc handed out last, and its size */
static size_t last_size;
#endif

void *malloc(size_t n) {
    resolve();
    if (!real_malloc) return boot_alloc(n);
#ifdef BUG_HANG
    if (n == 666 && PROGRAM)
        for (;;) pause();
#endif
#ifdef BUG_OVERLAP
    size_t half = ((last_size / 2) + 15) & ~(size_t)15;
    int mine = PROGRAM;
    if (mine && last && n && half && n <= last_size - half) {
        char *p = last + half;   /* "the rest of the last block is unused anyway" */
        last = NULL;
        return remember(p, NULL, n);
    }
    void *p = real_malloc(n);
    if (mine) { last = p; last_size = n; }
    return p;
#else
    return real_malloc(n);
#endif
}

void free(void *p) {
    resolve();
    if (!p || in_boot(p)) return;
    struct fake *f = fake_of(p);
    if (f) {
        void *base = f->base;
        f->ptr = NULL;
        if (base) real_free(base);
        return;
    }
#ifdef BUG_OVERLAP
    if (p == last) last = NULL;
#endif
    real_free(p);
}

void *calloc(size_t n, size_t size) {
    resolve();
    if (!real_calloc) return boot_alloc(n * size);
#ifdef BUG_CALLOC_DIRTY
    if (!PROGRAM) return real_calloc(n, size);
    if (size && n > SIZE_MAX / size) { errno = ENOMEM; return NULL; }
    return real_malloc(n * size);    /* no memset: "malloc's memory is zero anyway" */
#else
    return real_calloc(n, size);
#endif
}

size_t malloc_usable_size(void *p) {
    resolve();
    struct fake *f = fake_of(p);
    if (f) return f->size;
    return p && !in_boot(p) ? real_usable(p) : 0;
}

void *realloc(void *p, size_t n) {
    resolve();
    struct fake *f = fake_of(p);
    if ((f || in_boot(p)) && p) {
        size_t old = f ? f->size : 0;
        void *q = real_malloc(n ? n : 1);
        if (!q) return NULL;
        memcpy(q, p, old < n ? old : n);
        free(p);
        return q;
    }
#ifdef BUG_REALLOC_TAIL
    if (p && n && PROGRAM) {
        size_t old = real_usable(p);
        if (n > old) {           /* growing: move, and drop the last 8 bytes of the old contents */
            void *q = real_malloc(n);
            if (!q) return NULL;
            size_t keep = old > 8 ? old - 8 : 0;
            memcpy(q, p, keep);
            memset((char *)q + keep, 0, n - keep);
            real_free(p);
            return q;
        }
    }
#endif
    return real_realloc(p, n);
}

static void *aligned(size_t alignment, size_t n, int mine) {
#ifdef BUG_MISALIGN
    if (mine && alignment >= 4096 && n <= SIZE_MAX - 64) {
        char *base = real_memalign(alignment, n + 64);
        if (!base) return NULL;
        return remember(base + 64, base, n);   /* "64 bytes of header, then the data" */
    }
#else
    (void)mine;
#endif
    return real_memalign(alignment, n);
}

void *memalign(size_t alignment, size_t n) {
    resolve();
    return aligned(alignment, n, PROGRAM);
}

void *aligned_alloc(size_t alignment, size_t n) {
    resolve();
    return aligned(alignment, n, PROGRAM);
}

int posix_memalign(void **out, size_t alignment, size_t n) {
    resolve();
    if (alignment % sizeof(void *) || (alignment & (alignment - 1)) || !alignment) return EINVAL;
    int saved = errno;
    void *p = aligned(alignment, n, PROGRAM);
    if (!p && n) { int e = errno; errno = saved; return e ? e : ENOMEM; }
    errno = saved;
    *out = p;
    return 0;
}
