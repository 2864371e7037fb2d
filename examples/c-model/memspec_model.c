/*
 * memspec_model.c -- a small user-space memory manager that speaks the memspec
 * line protocol (docs/protocol.md) on stdin/stdout, written to be judged by
 *
 *     memspec check --target cmd:./memspec_model
 *
 * It implements two slices:
 *   os    mmap, munmap, mprotect, load, store, fetch, fork, exit: anonymous
 *         private and shared mappings, per-process address spaces, copy-on-write
 *         contents after fork, errno values and SIGSEGV as Linux x86-64 gives them;
 *   phys  a binary buddy allocator (buddy_alloc, buddy_free, nr_free_pages,
 *         buddy_largest) over two NUMA nodes with a DMA zone.
 *
 * Everything else a layer defines is simply not listed in the hello's "calls":
 * memspec then reports those programs as not applicable, never as passed.
 *
 * Break it on purpose with --bug=NAME (or MEMSPEC_C_MODEL_BUG=NAME); --bugs lists
 * the names.  Plain C99 + POSIX, no libraries: build with
 *
 *     cc -O2 -std=c99 -Wall -o memspec_model memspec_model.c
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t u64;
typedef int64_t i64;

/* ------------------------------------------------------------------------ */
/* Deliberate bugs                                                          */

enum bug {
    BUG_NONE,
    BUG_MPROTECT_LAST_PAGE,   /* mprotect of several pages leaves the last one unchanged */
    BUG_MUNMAP_LEAVES_PAGE,   /* munmap of several pages leaves the last one mapped */
    BUG_LEN0_ENOMEM,          /* mmap(len 0) fails with ENOMEM instead of EINVAL */
    BUG_NX_IGNORED,           /* readable pages can be executed */
    BUG_FORK_SHARES_PRIVATE,  /* fork shares private pages instead of copying them */
    BUG_BUDDY_NO_COALESCE,    /* freed buddies are not merged */
    BUG_BUDDY_DOUBLE_FREE,    /* freeing a block that is not allocated "succeeds" */
};

static const struct { const char *name; enum bug bug; const char *what; } BUGS[] = {
    {"mprotect-last-page", BUG_MPROTECT_LAST_PAGE, "mprotect of more than one page misses the last page"},
    {"munmap-leaves-page", BUG_MUNMAP_LEAVES_PAGE, "munmap of more than one page leaves the last page mapped"},
    {"len0-enomem", BUG_LEN0_ENOMEM, "mmap with length 0 fails with ENOMEM instead of EINVAL"},
    {"nx-ignored", BUG_NX_IGNORED, "a fetch from a readable page without PROT_EXEC succeeds"},
    {"fork-shares-private", BUG_FORK_SHARES_PRIVATE, "after fork, private pages written before fork stay shared"},
    {"buddy-no-coalesce", BUG_BUDDY_NO_COALESCE, "buddy_free never merges a block with its free buddy"},
    {"buddy-double-free", BUG_BUDDY_DOUBLE_FREE, "buddy_free of a pfn that is not allocated returns 0"},
};
static enum bug bug = BUG_NONE;

/* ------------------------------------------------------------------------ */
/* A reader for the protocol's flat JSON messages                            */

#define MAX_ARGS 8
#define NAME_LEN 64

struct arg { int is_str; i64 num; char str[256]; };

struct msg {
    char type[NAME_LEN];
    i64 id; int has_id;
    char proc[NAME_LEN];
    char name[NAME_LEN];
    char result[NAME_LEN];
    struct arg args[MAX_ARGS]; int nargs;
    int protocol;
};

struct reader { const char *p; int bad; };

static void skip_ws(struct reader *r) { while (*r->p == ' ' || *r->p == '\t' || *r->p == '\r' || *r->p == '\n') r->p++; }

static void read_string(struct reader *r, char *out, size_t cap) {
    size_t n = 0;
    if (*r->p != '"') { r->bad = 1; return; }
    r->p++;
    while (*r->p && *r->p != '"') {
        char c = *r->p++;
        if (c == '\\') {
            c = *r->p++;
            switch (c) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'u': /* keep it simple: \uXXXX becomes '?' */
                for (int i = 0; i < 4 && *r->p; i++) r->p++;
                c = '?'; break;
            case '\0': r->bad = 1; return;
            default: break;   /* \" \\ \/ */
            }
        }
        if (out && n + 1 < cap) out[n++] = c;
    }
    if (*r->p != '"') { r->bad = 1; return; }
    r->p++;
    if (out) out[n] = 0;
}

/* Integers arrive in decimal and may exceed int64 (e.g. 18446744073709551615):
   read them modulo 2^64, as the C ABI would pass them in a register. */
static i64 read_number(struct reader *r) {
    int neg = 0; u64 v = 0; int digits = 0;
    if (*r->p == '-') { neg = 1; r->p++; }
    while (*r->p >= '0' && *r->p <= '9') { v = v * 10 + (u64)(*r->p++ - '0'); digits++; }
    if (!digits) r->bad = 1;
    if (*r->p == '.' || *r->p == 'e' || *r->p == 'E') r->bad = 1;   /* the protocol has no fractions */
    return (i64)(neg ? (u64)0 - v : v);
}

static void skip_value(struct reader *r, int depth);

static void skip_container(struct reader *r, char close, int depth) {
    r->p++;
    skip_ws(r);
    if (*r->p == close) { r->p++; return; }
    for (;;) {
        skip_ws(r);
        if (close == '}') { read_string(r, NULL, 0); skip_ws(r); if (*r->p++ != ':') { r->bad = 1; return; } }
        skip_value(r, depth + 1);
        if (r->bad) return;
        skip_ws(r);
        if (*r->p == ',') { r->p++; continue; }
        if (*r->p == close) { r->p++; return; }
        r->bad = 1; return;
    }
}

static void skip_value(struct reader *r, int depth) {
    skip_ws(r);
    if (depth > 32) { r->bad = 1; return; }
    if (*r->p == '"') read_string(r, NULL, 0);
    else if (*r->p == '{') skip_container(r, '}', depth);
    else if (*r->p == '[') skip_container(r, ']', depth);
    else if (!strncmp(r->p, "null", 4)) r->p += 4;
    else if (!strncmp(r->p, "true", 4)) r->p += 4;
    else if (!strncmp(r->p, "false", 5)) r->p += 5;
    else read_number(r);
}

static void read_args(struct reader *r, struct msg *m) {
    r->p++;   /* '[' */
    skip_ws(r);
    if (*r->p == ']') { r->p++; return; }
    for (;;) {
        skip_ws(r);
        if (m->nargs >= MAX_ARGS) { r->bad = 1; return; }
        struct arg *a = &m->args[m->nargs++];
        if (*r->p == '"') { a->is_str = 1; read_string(r, a->str, sizeof a->str); }
        else { a->is_str = 0; a->num = read_number(r); }
        if (r->bad) return;
        skip_ws(r);
        if (*r->p == ',') { r->p++; continue; }
        if (*r->p == ']') { r->p++; return; }
        r->bad = 1; return;
    }
}

/* Parse one message; returns 0 on success. Unknown keys are skipped. */
static int parse_msg(const char *line, struct msg *m) {
    struct reader r = {line, 0};
    memset(m, 0, sizeof *m);
    skip_ws(&r);
    if (*r.p != '{') return -1;
    r.p++;
    skip_ws(&r);
    if (*r.p == '}') return -1;
    for (;;) {
        char key[NAME_LEN];
        skip_ws(&r);
        read_string(&r, key, sizeof key);
        skip_ws(&r);
        if (r.bad || *r.p++ != ':') return -1;
        skip_ws(&r);
        if (!strcmp(key, "type") && *r.p == '"') read_string(&r, m->type, sizeof m->type);
        else if (!strcmp(key, "proc") && *r.p == '"') read_string(&r, m->proc, sizeof m->proc);
        else if (!strcmp(key, "name") && *r.p == '"') read_string(&r, m->name, sizeof m->name);
        else if (!strcmp(key, "result") && *r.p == '"') read_string(&r, m->result, sizeof m->result);
        else if (!strcmp(key, "id") && (*r.p == '-' || (*r.p >= '0' && *r.p <= '9'))) { m->id = read_number(&r); m->has_id = 1; }
        else if (!strcmp(key, "protocol") && *r.p >= '0' && *r.p <= '9') m->protocol = (int)read_number(&r);
        else if (!strcmp(key, "args") && *r.p == '[') read_args(&r, m);
        else skip_value(&r, 0);
        if (r.bad) return -1;
        skip_ws(&r);
        if (*r.p == ',') { r.p++; continue; }
        if (*r.p == '}') break;
        return -1;
    }
    return m->type[0] ? 0 : -1;
}

/* ------------------------------------------------------------------------ */
/* Replies                                                                  */

static void reply_value(i64 id, i64 value) { printf("{\"type\":\"reply\",\"id\":%" PRId64 ",\"value\":%" PRId64 "}\n", id, value); }
static void reply_ok(i64 id) { printf("{\"type\":\"reply\",\"id\":%" PRId64 ",\"value\":null}\n", id); }
static void reply_errno(i64 id, const char *e) { printf("{\"type\":\"reply\",\"id\":%" PRId64 ",\"value\":-1,\"errno\":\"%s\"}\n", id, e); }
static void reply_signal(i64 id, const char *s) { printf("{\"type\":\"reply\",\"id\":%" PRId64 ",\"value\":null,\"signal\":\"%s\"}\n", id, s); }

static void reply_error(int has_id, i64 id, const char *text) {
    if (has_id) printf("{\"type\":\"error\",\"id\":%" PRId64 ",\"message\":\"%s\"}\n", id, text);
    else printf("{\"type\":\"error\",\"id\":null,\"message\":\"%s\"}\n", text);
}

/* Linux errno names by number, as the kernel's -errno leaks through IS_ERR_VALUE. */
static const char *const ERRNO_NAMES[] = {
    "", "EPERM", "ENOENT", "ESRCH", "EINTR", "EIO", "ENXIO", "E2BIG", "ENOEXEC", "EBADF", "ECHILD", "EAGAIN",
    "ENOMEM", "EACCES", "EFAULT", "ENOTBLK", "EBUSY", "EEXIST", "EXDEV", "ENODEV", "ENOTDIR", "EISDIR", "EINVAL",
    "ENFILE", "EMFILE", "ENOTTY", "ETXTBSY", "EFBIG", "ENOSPC", "ESPIPE", "EROFS", "EMLINK", "EPIPE", "EDOM",
    "ERANGE", "EDEADLOCK", "ENAMETOOLONG", "ENOLCK", "ENOSYS", "ENOTEMPTY", "ELOOP", "", "ENOMSG", "EIDRM",
    "ECHRNG", "EL2NSYNC", "EL3HLT", "EL3RST", "ELNRNG", "EUNATCH", "ENOCSI", "EL2HLT", "EBADE", "EBADR", "EXFULL",
    "ENOANO", "EBADRQC", "EBADSLT", "", "EBFONT", "ENOSTR", "ENODATA", "ETIME", "ENOSR", "ENONET", "ENOPKG",
    "EREMOTE", "ENOLINK", "EADV", "ESRMNT", "ECOMM", "EPROTO", "EMULTIHOP", "EDOTDOT", "EBADMSG", "EOVERFLOW",
    "ENOTUNIQ", "EBADFD", "EREMCHG", "ELIBACC", "ELIBBAD", "ELIBSCN", "ELIBMAX", "ELIBEXEC", "EILSEQ", "ERESTART",
    "ESTRPIPE", "EUSERS", "ENOTSOCK", "EDESTADDRREQ", "EMSGSIZE", "EPROTOTYPE", "ENOPROTOOPT", "EPROTONOSUPPORT",
    "ESOCKTNOSUPPORT", "ENOTSUP", "EPFNOSUPPORT", "EAFNOSUPPORT", "EADDRINUSE", "EADDRNOTAVAIL", "ENETDOWN",
    "ENETUNREACH", "ENETRESET", "ECONNABORTED", "ECONNRESET", "ENOBUFS", "EISCONN", "ENOTCONN", "ESHUTDOWN",
    "ETOOMANYREFS", "ETIMEDOUT", "ECONNREFUSED", "EHOSTDOWN", "EHOSTUNREACH", "EALREADY", "EINPROGRESS", "ESTALE",
    "EUCLEAN", "ENOTNAM", "ENAVAIL", "EISNAM", "EREMOTEIO", "EDQUOT", "ENOMEDIUM", "EMEDIUMTYPE", "ECANCELED",
    "ENOKEY", "EKEYEXPIRED", "EKEYREVOKED", "EKEYREJECTED", "EOWNERDEAD", "ENOTRECOVERABLE", "ERFKILL",
};

static void reply_errno_number(i64 id, unsigned n) {
    char buf[32];
    if (n < sizeof ERRNO_NAMES / sizeof ERRNO_NAMES[0] && ERRNO_NAMES[n][0]) { reply_errno(id, ERRNO_NAMES[n]); return; }
    snprintf(buf, sizeof buf, "E#%u", n);
    reply_errno(id, buf);
}

/* ------------------------------------------------------------------------ */
/* The os slice: address spaces                                             */

#define PAGE 4096ULL
#define PAGE_MASK (~(PAGE - 1))
#define TASK_SIZE 0x7FFFFFFFF000ULL
#define MMAP_BASE 0x7F0000000000ULL
#define MMAP_MIN_ADDR 4096ULL

#define PROT_READ 0x1
#define PROT_WRITE 0x2
#define PROT_EXEC 0x4
#define PROT_SEM 0x8
#define PROT_GROWSDOWN 0x01000000
#define PROT_GROWSUP 0x02000000
#define PROT_RWX 0x7

#define MAP_SHARED 0x01
#define MAP_PRIVATE 0x02
#define MAP_DROPPABLE 0x08
#ifndef MAP_LOCKED
#define MAP_LOCKED 0x2000
#endif
#define MAP_TYPE 0x0f
#define MAP_FIXED 0x10
#define MAP_ANONYMOUS 0x20
#define MAP_32BIT 0x40
#define MAP_GROWSDOWN 0x0100
#define MAP_HUGETLB 0x40000
#define MAP_FIXED_NOREPLACE 0x100000

static u64 page_align(u64 n) { return (n + PAGE - 1) & PAGE_MASK; }   /* wraps to 0 past 2^64 */

/* A shared memory object: its pages by offset. */
struct page { u64 key; unsigned char *data; };
struct pages { struct page *v; size_t n, cap; };

static unsigned char *pages_get(struct pages *ps, u64 key) {
    for (size_t i = 0; i < ps->n; i++) if (ps->v[i].key == key) return ps->v[i].data;
    return NULL;
}

static unsigned char *pages_touch(struct pages *ps, u64 key) {
    unsigned char *d = pages_get(ps, key);
    if (d) return d;
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? 2 * ps->cap : 16;
        ps->v = realloc(ps->v, ps->cap * sizeof *ps->v);
        if (!ps->v) { perror("realloc"); exit(3); }
    }
    d = calloc(1, PAGE);
    if (!d) { perror("calloc"); exit(3); }
    ps->v[ps->n].key = key;
    ps->v[ps->n].data = d;
    ps->n++;
    return d;
}

static void pages_drop_range(struct pages *ps, u64 start, u64 end, int free_data) {
    size_t j = 0;
    for (size_t i = 0; i < ps->n; i++) {
        if (ps->v[i].key >= start && ps->v[i].key < end) { if (free_data) free(ps->v[i].data); }
        else ps->v[j++] = ps->v[i];
    }
    ps->n = j;
}

static void pages_free(struct pages *ps, int free_data) {
    if (free_data) for (size_t i = 0; i < ps->n; i++) free(ps->v[i].data);
    free(ps->v);
    memset(ps, 0, sizeof *ps);
}

#define MAX_OBJECTS 4096
static struct pages objects[MAX_OBJECTS];
static int n_objects;

struct vma { u64 start, end; int prot; int shared; int obj; u64 origin; };

struct mm {
    char name[NAME_LEN];
    int live;
    struct vma *v; size_t n, cap;    /* sorted by start, disjoint */
    struct pages private_pages;      /* page address -> contents of private memory */
};

#define MAX_PROCS 64
static struct mm procs[MAX_PROCS];
static int next_pid;

static struct mm *find_proc(const char *name) {
    const char *want = name[0] ? name : "main";
    for (int i = 0; i < MAX_PROCS; i++) if (procs[i].live && !strcmp(procs[i].name, want)) return &procs[i];
    return NULL;
}

static struct mm *new_proc(const char *name) {
    for (int i = 0; i < MAX_PROCS; i++) {
        if (!procs[i].live) {
            memset(&procs[i], 0, sizeof procs[i]);
            snprintf(procs[i].name, sizeof procs[i].name, "%s", name);
            procs[i].live = 1;
            return &procs[i];
        }
    }
    return NULL;
}

static void vma_insert_at(struct mm *mm, size_t i, struct vma v) {
    if (mm->n == mm->cap) {
        mm->cap = mm->cap ? 2 * mm->cap : 16;
        mm->v = realloc(mm->v, mm->cap * sizeof *mm->v);
        if (!mm->v) { perror("realloc"); exit(3); }
    }
    memmove(&mm->v[i + 1], &mm->v[i], (mm->n - i) * sizeof *mm->v);
    mm->v[i] = v;
    mm->n++;
}

static struct vma *vma_find(struct mm *mm, u64 addr) {
    for (size_t i = 0; i < mm->n; i++) if (mm->v[i].start <= addr && addr < mm->v[i].end) return &mm->v[i];
    return NULL;
}

static int any_overlap(struct mm *mm, u64 start, u64 end) {
    for (size_t i = 0; i < mm->n; i++) if (mm->v[i].start < end && start < mm->v[i].end) return 1;
    return 0;
}

/* Cut [start, end) out of the VMA list, splitting VMAs at the edges. */
static void vma_cut(struct mm *mm, u64 start, u64 end) {
    for (size_t i = 0; i < mm->n;) {
        struct vma *v = &mm->v[i];
        if (v->end <= start || v->start >= end) { i++; continue; }
        if (v->start < start && v->end > end) {          /* a hole in the middle: split in two */
            struct vma right = *v;
            right.start = end;
            v->end = start;
            vma_insert_at(mm, i + 1, right);
            return;
        }
        if (v->start < start) { v->end = start; i++; continue; }
        if (v->end > end) { v->start = end; i++; continue; }
        memmove(&mm->v[i], &mm->v[i + 1], (mm->n - i - 1) * sizeof *mm->v);
        mm->n--;
    }
}

static void vma_set(struct mm *mm, struct vma nv) {
    vma_cut(mm, nv.start, nv.end);
    size_t i = 0;
    while (i < mm->n && mm->v[i].start < nv.start) i++;
    vma_insert_at(mm, i, nv);
}

static void unmap_range(struct mm *mm, u64 start, u64 end) {
    pages_drop_range(&mm->private_pages, start, end, bug != BUG_FORK_SHARES_PRIVATE);
    vma_cut(mm, start, end);
}

/* The lowest VMA start in [start, end), or 0 if none. */
static u64 first_overlap_start(struct mm *mm, u64 start, u64 end) {
    u64 best = 0;
    for (size_t i = 0; i < mm->n; i++)
        if (mm->v[i].start < end && start < mm->v[i].end && (!best || mm->v[i].start < best)) best = mm->v[i].start;
    return best ? best : start;
}

/* Top-down search for a free range of plen bytes in [lo, hi). */
static int pick_range(struct mm *mm, u64 hint, u64 plen, u64 lo, u64 hi, u64 *out) {
    if (hint && hint + plen <= hi && hint + plen > hint && !any_overlap(mm, hint, hint + plen)) { *out = hint; return 1; }
    u64 top = hi < MMAP_BASE ? hi : MMAP_BASE;
    for (int pass = 0; pass < 2; pass++) {
        if (plen <= top && top - plen >= lo) {
            u64 cand = top - plen;
            for (;;) {
                if (!any_overlap(mm, cand, cand + plen)) { *out = cand; return 1; }
                u64 below = first_overlap_start(mm, cand, cand + plen);
                if (below < lo + plen) break;
                cand = below - plen;
            }
        }
        top = hi;   /* second pass: above mmap_base too */
    }
    return 0;
}

static void do_mmap(i64 id, struct mm *mm, u64 addr, u64 length, int prot, int flags, i64 fd, u64 offset) {
    if (offset & ~PAGE_MASK) { reply_errno(id, "EINVAL"); return; }
    if (!(flags & MAP_ANONYMOUS)) {
        /* This slice has no files: no descriptor is open, so every fd is a bad one. */
        (void)fd;
        reply_errno(id, "EBADF");
        return;
    }
    if (flags & (MAP_HUGETLB | MAP_GROWSDOWN)) { reply_errno(id, "EINVAL"); return; }
    if (length == 0) { reply_errno(id, bug == BUG_LEN0_ENOMEM ? "ENOMEM" : "EINVAL"); return; }
    u64 plen = page_align(length);
    if (plen == 0) { reply_errno(id, "ENOMEM"); return; }
    int fixed = (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) != 0;
    if (plen > TASK_SIZE) { reply_errno(id, "ENOMEM"); return; }
    if (fixed) {
        /* The kernel reads an address in the top 4095 values as an error pointer. */
        if (addr >= (u64)0 - 4095) { reply_errno_number(id, (unsigned)((u64)0 - addr)); return; }
        if (addr > TASK_SIZE - plen) { reply_errno(id, "ENOMEM"); return; }
        if (addr & ~PAGE_MASK) { reply_errno(id, "EINVAL"); return; }
        if ((flags & MAP_FIXED_NOREPLACE) && any_overlap(mm, addr, addr + plen)) { reply_errno(id, "EEXIST"); return; }
    }
    int type = flags & MAP_TYPE;
    if (type != MAP_SHARED && type != MAP_PRIVATE && type != MAP_DROPPABLE) { reply_errno(id, "EINVAL"); return; }
    /* mm/mmap.c do_mmap, case MAP_DROPPABLE: a locked droppable area makes no sense */
    if (type == MAP_DROPPABLE && (flags & MAP_LOCKED)) { reply_errno(id, "EINVAL"); return; }
    u64 start;
    if (fixed) {
        start = addr;
    } else {
        u64 hi = (flags & MAP_32BIT) ? 0x80000000ULL : TASK_SIZE;
        u64 hint = addr & PAGE_MASK;
        if (hint && hint < MMAP_MIN_ADDR) hint = page_align(MMAP_MIN_ADDR);
        if (flags & MAP_32BIT) hint = 0;
        /* arch/x86/kernel/sys_x86_64.c find_start_end: MAP_32BIT searches [1 GiB, 2 GiB) only */
        u64 lo = (flags & MAP_32BIT) ? 0x40000000ULL : MMAP_MIN_ADDR;
        if (!pick_range(mm, hint, plen, lo, hi, &start)) { reply_errno(id, "ENOMEM"); return; }
    }
    struct vma v = {start, start + plen, prot & PROT_RWX, type == MAP_SHARED, -1, start};
    if (v.shared) {
        if (n_objects == MAX_OBJECTS) { reply_errno(id, "ENOMEM"); return; }
        v.obj = n_objects++;
    }
    unmap_range(mm, v.start, v.end);
    vma_set(mm, v);
    reply_value(id, (i64)start);
}

static void do_munmap(i64 id, struct mm *mm, u64 addr, u64 length) {
    if (addr & ~PAGE_MASK) { reply_errno(id, "EINVAL"); return; }
    if (addr > TASK_SIZE || length > TASK_SIZE - addr) { reply_errno(id, "EINVAL"); return; }
    u64 plen = page_align(length);
    if (plen == 0) { reply_errno(id, "EINVAL"); return; }
    if (bug == BUG_MUNMAP_LEAVES_PAGE && plen > PAGE) plen -= PAGE;
    unmap_range(mm, addr, addr + plen);
    reply_value(id, 0);
}

static void set_prot(struct mm *mm, u64 start, u64 end, int prot) {
    /* Split at the edges, then change every VMA inside. */
    for (size_t i = 0; i < mm->n; i++) {
        struct vma *v = &mm->v[i];
        if (v->end <= start || v->start >= end) continue;
        if (v->start < start) {
            struct vma right = *v; right.start = start; v->end = start;
            vma_insert_at(mm, i + 1, right);
            continue;   /* the right half is visited next */
        }
        if (v->end > end) {
            struct vma right = *v; right.start = end; v->end = end;
            vma_insert_at(mm, i + 1, right);
        }
        mm->v[i].prot = prot;
    }
}

static void do_mprotect(i64 id, struct mm *mm, u64 addr, u64 length, u64 prot) {
    if ((prot & (PROT_GROWSDOWN | PROT_GROWSUP)) == (PROT_GROWSDOWN | PROT_GROWSUP)) { reply_errno(id, "EINVAL"); return; }
    if (addr & ~PAGE_MASK) { reply_errno(id, "EINVAL"); return; }
    if (length == 0) { reply_value(id, 0); return; }
    u64 plen = page_align(length);
    u64 end = addr + plen;
    if (plen == 0 || end <= addr) { reply_errno(id, "ENOMEM"); return; }
    if (prot & ~(u64)(PROT_RWX | PROT_SEM | PROT_GROWSDOWN | PROT_GROWSUP)) { reply_errno(id, "EINVAL"); return; }
    if (!any_overlap(mm, addr, end)) { reply_errno(id, "ENOMEM"); return; }
    if (prot & PROT_GROWSDOWN) { reply_errno(id, "EINVAL"); return; }
    if (!vma_find(mm, addr)) { reply_errno(id, "ENOMEM"); return; }
    if (prot & PROT_GROWSUP) { reply_errno(id, "EINVAL"); return; }
    /* Walk the VMAs from addr; Linux changes everything before the first hole, then fails. */
    u64 cursor = addr;
    int hole = 0;
    for (size_t i = 0; i < mm->n; i++) {
        struct vma *v = &mm->v[i];
        if (v->end <= addr || v->start >= end) continue;
        if (v->start > cursor) { hole = 1; break; }
        cursor = v->end;
    }
    if (cursor < end) hole = 1;
    u64 stop = hole ? cursor : end;
    if (stop > end) stop = end;
    if (bug == BUG_MPROTECT_LAST_PAGE && !hole && plen > PAGE) stop -= PAGE;
    set_prot(mm, addr, stop, (int)(prot & PROT_RWX));
    if (hole) reply_errno(id, "ENOMEM");
    else reply_value(id, 0);
}

static unsigned char *contents(struct mm *mm, struct vma *v, u64 addr, int for_write) {
    u64 page = addr & PAGE_MASK;
    if (v->shared) {
        struct pages *ps = &objects[v->obj];
        return for_write ? pages_touch(ps, page - v->origin) : pages_get(ps, page - v->origin);
    }
    return for_write ? pages_touch(&mm->private_pages, page) : pages_get(&mm->private_pages, page);
}

static void do_load(i64 id, struct mm *mm, u64 addr) {
    struct vma *v = vma_find(mm, addr);
    /* x86 page tables cannot express write-only, and without protection keys
       PROT_EXEC alone is readable too: any protection but PROT_NONE reads. */
    if (!v || v->prot == 0) { reply_signal(id, "SIGSEGV"); return; }
    unsigned char *d = contents(mm, v, addr, 0);
    reply_value(id, d ? d[addr & (PAGE - 1)] : 0);
}

static void do_store(i64 id, struct mm *mm, u64 addr, i64 value) {
    struct vma *v = vma_find(mm, addr);
    if (!v || !(v->prot & PROT_WRITE)) { reply_signal(id, "SIGSEGV"); return; }
    contents(mm, v, addr, 1)[addr & (PAGE - 1)] = (unsigned char)(value & 0xff);
    reply_ok(id);
}

static void do_fetch(i64 id, struct mm *mm, u64 addr) {
    struct vma *v = vma_find(mm, addr);
    int exec = v && ((v->prot & PROT_EXEC) || (bug == BUG_NX_IGNORED && (v->prot & PROT_READ)));
    if (!exec) { reply_signal(id, "SIGSEGV"); return; }
    reply_ok(id);
}

static void do_fork(i64 id, struct mm *mm, const char *child_name) {
    if (!child_name[0]) { reply_errno(id, "EINVAL"); return; }
    struct mm *c = new_proc(child_name);
    if (!c) { reply_errno(id, "EAGAIN"); return; }
    mm = find_proc(mm->name);   /* new_proc may not move it, but be explicit */
    for (size_t i = 0; i < mm->n; i++) vma_insert_at(c, c->n, mm->v[i]);
    for (size_t i = 0; i < mm->private_pages.n; i++) {
        struct page *p = &mm->private_pages.v[i];
        if (bug == BUG_FORK_SHARES_PRIVATE) {
            /* the broken way: both processes keep writing to one page */
            if (c->private_pages.n == c->private_pages.cap) {
                c->private_pages.cap = c->private_pages.cap ? 2 * c->private_pages.cap : 16;
                c->private_pages.v = realloc(c->private_pages.v, c->private_pages.cap * sizeof *c->private_pages.v);
                if (!c->private_pages.v) { perror("realloc"); exit(3); }
            }
            c->private_pages.v[c->private_pages.n++] = *p;
        } else {
            memcpy(pages_touch(&c->private_pages, p->key), p->data, PAGE);
        }
    }
    reply_value(id, next_pid++);
}

static void do_exit(i64 id, struct mm *mm) {
    if (!strcmp(mm->name, "main")) { reply_errno(id, "EINVAL"); return; }
    pages_free(&mm->private_pages, bug != BUG_FORK_SHARES_PRIVATE);
    free(mm->v);
    memset(mm, 0, sizeof *mm);
    reply_ok(id);
}

static void os_reset(void) {
    for (int i = 0; i < MAX_PROCS; i++) {
        if (procs[i].live) { pages_free(&procs[i].private_pages, bug != BUG_FORK_SHARES_PRIVATE); free(procs[i].v); }
        memset(&procs[i], 0, sizeof procs[i]);
    }
    for (int i = 0; i < n_objects; i++) pages_free(&objects[i], 1);
    n_objects = 0;
    next_pid = 2;
    new_proc("main");
}

/* The state message: every live process's map, adjacent equal ranges merged as
   /proc/PID/maps would show them. */
static void observe(i64 id) {
    printf("{\"type\":\"state\",\"id\":%" PRId64 ",\"procs\":{", id);
    int first_proc = 1;
    for (int i = 0; i < MAX_PROCS; i++) {
        struct mm *mm = &procs[i];
        if (!mm->live) continue;
        printf("%s\"%s\":{\"maps\":[", first_proc ? "" : ",", mm->name);
        first_proc = 0;
        int first = 1;
        for (size_t k = 0; k < mm->n;) {
            struct vma *v = &mm->v[k];
            u64 s = v->start, e = v->end;
            char perms[5] = {v->prot & PROT_READ ? 'r' : '-', v->prot & PROT_WRITE ? 'w' : '-',
                             v->prot & PROT_EXEC ? 'x' : '-', v->shared ? 's' : 'p', 0};
            size_t j = k + 1;
            while (j < mm->n && mm->v[j].start == e && mm->v[j].prot == v->prot && mm->v[j].shared == v->shared) {
                e = mm->v[j].end;
                j++;
            }
            printf("%s[%" PRIu64 ",%" PRIu64 ",\"%s\"]", first ? "" : ",", s, e, perms);
            first = 0;
            k = j;
        }
        printf("]}");
    }
    printf("}}\n");
}

/* ------------------------------------------------------------------------ */
/* The phys slice: a binary buddy allocator                                 */
/*
 * The machine is memspec's default one: two NUMA nodes of 8192 frames each;
 * node 0's first 4096 frames are ZONE_DMA; frame 0 is reserved.  Each node's
 * Normal zone is tried before its DMA zone, nearer nodes before farther ones.
 */

#define MAX_ORDER 10
#define NODE_FRAMES 8192
#define NODES 2
#define FRAMES (NODES * NODE_FRAMES)
#define DMA_FRAMES 4096
#define GFP_DMA 0x1
#define GFP_THISNODE 0x200000

struct zone { int node; int dma; int start, end; };
static const struct zone ZONES[] = {
    {0, 1, 0, DMA_FRAMES}, {0, 0, DMA_FRAMES, NODE_FRAMES}, {1, 0, NODE_FRAMES, 2 * NODE_FRAMES},
};
#define NZONES (int)(sizeof ZONES / sizeof ZONES[0])

static signed char free_order[FRAMES];    /* order of the free block starting here, or -1 */
static signed char alloc_order[FRAMES];   /* order of the buddy_alloc block starting here, or -1 */

static int zone_of(int pfn) {
    for (int z = 0; z < NZONES; z++) if (pfn >= ZONES[z].start && pfn < ZONES[z].end) return z;
    return -1;
}

static void buddy_reset(void) {
    memset(free_order, -1, sizeof free_order);
    memset(alloc_order, -1, sizeof alloc_order);
    for (int z = 0; z < NZONES; z++) {
        int pfn = ZONES[z].start;
        while (pfn < ZONES[z].end) {
            if (pfn == 0) { pfn++; continue; }      /* reserved by the kernel */
            int order = MAX_ORDER;
            while (order > 0 && (pfn % (1 << order) || pfn + (1 << order) > ZONES[z].end))
                order--;
            free_order[pfn] = (signed char)order;
            pfn += 1 << order;
        }
    }
}

static void buddy_free_block(int pfn, int order) {
    int z = zone_of(pfn);
    while (order < MAX_ORDER && bug != BUG_BUDDY_NO_COALESCE) {
        int b = pfn ^ (1 << order);
        if (b < ZONES[z].start || b >= ZONES[z].end || free_order[b] != order) break;
        free_order[b] = -1;
        if (b < pfn) pfn = b;
        order++;
    }
    free_order[pfn] = (signed char)order;
}

/* The smallest free block of order >= k in zone z, lowest address first; split it. */
static int alloc_in_zone(int z, int k) {
    for (int order = k; order <= MAX_ORDER; order++) {
        for (int pfn = ZONES[z].start; pfn < ZONES[z].end; pfn++) {
            if (free_order[pfn] != order) continue;
            free_order[pfn] = -1;
            while (order > k) {                   /* keep the low half, free the high half */
                order--;
                free_order[pfn + (1 << order)] = (signed char)order;
            }
            return pfn;
        }
    }
    return -1;
}

static void do_buddy_alloc(i64 id, i64 order, i64 node, i64 gfp, i64 owner) {
    if (order < 0 || order > MAX_ORDER) { reply_errno(id, "ENOMEM"); return; }
    if (node < -1 || node >= NODES || owner < 1 || owner > 5) { reply_errno(id, "EINVAL"); return; }
    int start = node < 0 ? 0 : (int)node;        /* the current CPU is on node 0 */
    int nodes[NODES] = {start, 1 - start};
    int nn = (gfp & GFP_THISNODE) ? 1 : NODES;
    for (int i = 0; i < nn; i++) {
        for (int pass = 0; pass < 2; pass++) {    /* Normal first, then DMA */
            for (int z = 0; z < NZONES; z++) {
                if (ZONES[z].node != nodes[i] || ZONES[z].dma != pass) continue;
                if ((gfp & GFP_DMA) && !ZONES[z].dma) continue;
                int pfn = alloc_in_zone(z, (int)order);
                if (pfn >= 0) {
                    alloc_order[pfn] = (signed char)order;
                    reply_value(id, pfn);
                    return;
                }
            }
        }
    }
    reply_errno(id, "ENOMEM");
}

static void do_buddy_free(i64 id, i64 pfn) {
    if (pfn < 0 || pfn >= FRAMES || alloc_order[pfn] < 0) {
        if (bug == BUG_BUDDY_DOUBLE_FREE) reply_value(id, 0);
        else reply_errno(id, "EINVAL");
        return;
    }
    int order = alloc_order[pfn];
    alloc_order[pfn] = -1;
    buddy_free_block((int)pfn, order);
    reply_value(id, 0);
}

static void do_nr_free_pages(i64 id, i64 node) {
    if (node < -1 || node >= NODES) { reply_errno(id, "EINVAL"); return; }
    i64 n = 0;
    for (int pfn = 0; pfn < FRAMES; pfn++)
        if (free_order[pfn] >= 0 && (node < 0 || pfn / NODE_FRAMES == node)) n += 1 << free_order[pfn];
    reply_value(id, n);
}

static void do_buddy_largest(i64 id, i64 node) {
    if (node < -1 || node >= NODES) { reply_errno(id, "EINVAL"); return; }
    int best = -1;
    for (int pfn = 0; pfn < FRAMES; pfn++)
        if (free_order[pfn] > best && (node < 0 || pfn / NODE_FRAMES == node)) best = free_order[pfn];
    reply_value(id, best);
}

/* ------------------------------------------------------------------------ */
/* The protocol loop                                                        */

struct call_def { const char *name; int nargs; };
static const struct call_def CALLS[] = {
    {"mmap", 6}, {"munmap", 2}, {"mprotect", 3}, {"load", 1}, {"store", 2}, {"fetch", 1}, {"fork", 0}, {"exit", 0},
    {"buddy_alloc", 4}, {"buddy_free", 1}, {"nr_free_pages", 1}, {"buddy_largest", 1},
};
#define NCALLS (int)(sizeof CALLS / sizeof CALLS[0])

static void hello(void) {
    printf("{\"type\":\"hello\",\"protocol\":1,\"name\":\"c-model%s%s\",\"layers\":[\"os\",\"phys\"],\"calls\":[",
           bug ? " bug=" : "", bug ? BUGS[bug - 1].name : "");
    for (int i = 0; i < NCALLS; i++) printf("%s\"%s\"", i ? "," : "", CALLS[i].name);
    printf("],\"facts\":{},\"unsupported\":[]}\n");
}

static void handle_call(struct msg *m) {
    int known = -1;
    for (int i = 0; i < NCALLS; i++) if (!strcmp(CALLS[i].name, m->name)) known = i;
    if (known < 0) { reply_error(1, m->id, "unknown call"); return; }
    if (m->nargs != CALLS[known].nargs) { reply_error(1, m->id, "wrong number of arguments"); return; }
    for (int i = 0; i < m->nargs; i++) if (m->args[i].is_str) { reply_error(1, m->id, "string argument"); return; }
    struct mm *mm = find_proc(m->proc);
    if (!mm) { reply_errno(m->id, "ESRCH"); return; }
    i64 *a = (i64[MAX_ARGS]){0};
    for (int i = 0; i < m->nargs; i++) a[i] = m->args[i].num;
    const char *n = m->name;
    if (!strcmp(n, "mmap")) do_mmap(m->id, mm, (u64)a[0], (u64)a[1], (int)a[2], (int)a[3], a[4], (u64)a[5]);
    else if (!strcmp(n, "munmap")) do_munmap(m->id, mm, (u64)a[0], (u64)a[1]);
    else if (!strcmp(n, "mprotect")) do_mprotect(m->id, mm, (u64)a[0], (u64)a[1], (u64)a[2]);
    else if (!strcmp(n, "load")) do_load(m->id, mm, (u64)a[0]);
    else if (!strcmp(n, "store")) do_store(m->id, mm, (u64)a[0], a[1]);
    else if (!strcmp(n, "fetch")) do_fetch(m->id, mm, (u64)a[0]);
    else if (!strcmp(n, "fork")) do_fork(m->id, mm, m->result);
    else if (!strcmp(n, "exit")) do_exit(m->id, mm);
    else if (!strcmp(n, "buddy_alloc")) do_buddy_alloc(m->id, a[0], a[1], a[2], a[3]);
    else if (!strcmp(n, "buddy_free")) do_buddy_free(m->id, a[0]);
    else if (!strcmp(n, "nr_free_pages")) do_nr_free_pages(m->id, a[0]);
    else if (!strcmp(n, "buddy_largest")) do_buddy_largest(m->id, a[0]);
}

static int choose_bug(const char *name) {
    for (size_t i = 0; i < sizeof BUGS / sizeof BUGS[0]; i++)
        if (!strcmp(BUGS[i].name, name)) { bug = BUGS[i].bug; return 0; }
    fprintf(stderr, "memspec_model: unknown bug %s (try --bugs)\n", name);
    return -1;
}

int main(int argc, char **argv) {
    const char *env = getenv("MEMSPEC_C_MODEL_BUG");
    if (env && *env && choose_bug(env)) return 2;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "--bug=", 6)) { if (choose_bug(argv[i] + 6)) return 2; }
        else if (!strcmp(argv[i], "--bugs")) {
            for (size_t k = 0; k < sizeof BUGS / sizeof BUGS[0]; k++) printf("%-22s %s\n", BUGS[k].name, BUGS[k].what);
            return 0;
        } else {
            fprintf(stderr, "usage: %s [--bug=NAME | --bugs]\n", argv[0]);
            return 2;
        }
    }
    os_reset();
    buddy_reset();
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, stdin) > 0) {
        struct msg m;
        if (parse_msg(line, &m)) { reply_error(0, 0, "not a protocol message"); fflush(stdout); continue; }
        if (!strcmp(m.type, "hello")) hello();
        else if (!strcmp(m.type, "call")) handle_call(&m);
        else if (!strcmp(m.type, "observe")) observe(m.id);
        else if (!strcmp(m.type, "reset")) { os_reset(); buddy_reset(); reply_value(m.id, 0); }
        else if (!strcmp(m.type, "bye")) break;
        else reply_error(m.has_id, m.id, "unknown message type");
        fflush(stdout);
    }
    free(line);
    return 0;
}
