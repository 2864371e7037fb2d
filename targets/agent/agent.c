/*
 * agent.c -- memspec's native agent for the os layer.
 *
 * One program in C99 with Linux system calls and nothing beyond libc.  It speaks memspec's
 * line protocol (docs/protocol.md) on standard input and output and makes the real system
 * calls for every call of the os layer, as the `linux` target does from a Python child:
 *
 *   - each program runs in a fresh process ("main") forked from this supervisor at its
 *     first call, which answers memspec on standard output itself; `reset` ends it and every
 *     process it forked;
 *   - `p2 = fork()` forks the process that calls it (main or any other: `p2: p3 = fork()`);
 *     every process has a socket of its own to main (a fork in another process gets the new
 *     process's socket from main with SCM_RIGHTS), so main relays `p3: ...` calls straight to
 *     it (length-prefixed frames), `p3: exit()` ends it, and a process whose parent exited goes
 *     on (an orphan, which main adopts as the child subreaper);
 *   - load and store are real accesses; a fault is caught by a SIGSEGV/SIGBUS handler that
 *     siglongjmps back and the reply names the signal; fetch jumps to the address in a
 *     forked grandchild, whose handler tells a fault of the fetch itself (a #PF with the
 *     I/D bit at the target RIP) from one of the instructions after it;
 *   - a call that would touch memory the program did not map (outside the sandbox window
 *     and what the program mapped, and mapped per /proc/self/maps) or a descriptor of the
 *     agent's own is refused: the reply carries "refused" and the program is not judged;
 *   - `observe` reports each live process's /proc/self/maps and its page faults since the
 *     program began in it (getrusage).
 *
 * The hello names the calls that exist here (a call whose system call fails with ENOSYS
 * is left out: not applicable, never failed) and the facts that must be probed inside
 * the agent's own process (execute-only pages, the top of the address space, page size,
 * its own mappings, limits, capabilities, a private /dev/shm).  Under an emulator such as
 * qemu-x86_64 the same binary probes the emulated system.
 *
 * Build: gcc -O2 -std=gnu99 -static -o memspec-agent agent.c   (memspec does this itself)
 * Run: memspec-agent [--answer-blocks]  (main's answers to calls that cannot take the process down
 * unnoticed written in blocks; memspec asks for it where the agent runs on the kernel itself).
 * Test variants: -DAGENT_BUG_MPROTECT_SHORT (mprotect leaves the last page as it was),
 * -DAGENT_BUG_CRASH_ON_MSYNC (dies of SIGABRT on msync), -DAGENT_BUG_GARBAGE_ON_MINCORE
 * (answers mincore with a line that is not JSON), -DAGENT_BUG_DIE_ON_PROT_NONE=SIG (raises SIG
 * in mprotect to PROT_NONE: a death in the middle of a block of answers).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <grp.h>
#include <poll.h>
#include <malloc.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

typedef uint64_t u64;
typedef int64_t i64;
typedef unsigned __int128 u128;

#define PAGE 4096ULL
#define PAGE_MASK (~(PAGE - 1))
#define USER_TOP (1ULL << 47)
#define TASK_SIZE (USER_TOP - PAGE)
#define WINDOW_LO 0x100000000000ULL
#define WINDOW_HI (0x100000000000ULL + (1ULL << 36))
#define NOBODY 65534
#define KPF_THP 22
#define MAP_FIXED_FLAG 0x10
#define MREMAP_FIXED_FLAG 2
#define MREMAP_DONTUNMAP_FLAG 4

/* ------------------------------------------------------------------------------------ */
/* errno names, as Python's errno.errorcode spells them (the linux target's names)       */

static const char *const ERRNO_NAMES[] = {
    [1]="EPERM", [2]="ENOENT", [3]="ESRCH", [4]="EINTR", [5]="EIO", [6]="ENXIO", [7]="E2BIG",
    [8]="ENOEXEC", [9]="EBADF", [10]="ECHILD", [11]="EAGAIN", [12]="ENOMEM", [13]="EACCES",
    [14]="EFAULT", [15]="ENOTBLK", [16]="EBUSY", [17]="EEXIST", [18]="EXDEV", [19]="ENODEV",
    [20]="ENOTDIR", [21]="EISDIR", [22]="EINVAL", [23]="ENFILE", [24]="EMFILE", [25]="ENOTTY",
    [26]="ETXTBSY", [27]="EFBIG", [28]="ENOSPC", [29]="ESPIPE", [30]="EROFS", [31]="EMLINK",
    [32]="EPIPE", [33]="EDOM", [34]="ERANGE", [35]="EDEADLOCK", [36]="ENAMETOOLONG",
    [37]="ENOLCK", [38]="ENOSYS", [39]="ENOTEMPTY", [40]="ELOOP", [42]="ENOMSG", [43]="EIDRM",
    [61]="ENODATA", [62]="ETIME", [75]="EOVERFLOW", [77]="EBADFD", [84]="EILSEQ",
    [95]="ENOTSUP", [110]="ETIMEDOUT", [122]="EDQUOT", [125]="ECANCELED",
};

static const char *errno_name(int e, char *tmp) {
    if (e > 0 && e < (int)(sizeof ERRNO_NAMES / sizeof ERRNO_NAMES[0]) && ERRNO_NAMES[e])
        return ERRNO_NAMES[e];
    sprintf(tmp, "E#%d", e);
    return tmp;
}

/* ------------------------------------------------------------------------------------ */
/* small helpers                                                                         */

static void die(const char *what) {
    fprintf(stderr, "memspec-agent: %s: %s\n", what, strerror(errno));
    _exit(70);
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t k = write(fd, c, n);
        if (k < 0) { if (errno == EINTR) continue; return -1; }
        c += k; n -= (size_t)k;
    }
    return 0;
}

static int read_all(int fd, void *p, size_t n) {
    char *c = p;
    while (n) {
        ssize_t k = read(fd, c, n);
        if (k < 0) { if (errno == EINTR) continue; return -1; }
        if (k == 0) return -1;
        c += k; n -= (size_t)k;
    }
    return 0;
}

/* a growing text buffer */
struct buf { char *p; size_t n, cap; };

static void bput(struct buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->n + n + 1 > cap) cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) die("out of memory");
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void bstr(struct buf *b, const char *s) { bput(b, s, strlen(s)); }
static void bfmt(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bfmt(struct buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    bput(b, tmp, (size_t)n);
}
/* a number in decimal (the replies' hot path, without printf) */
static void bu64(struct buf *b, u64 v) {
    char tmp[24], *e = tmp + sizeof tmp, *p = e;
    do { *--p = (char)('0' + v % 10); v /= 10; } while (v);
    bput(b, p, (size_t)(e - p));
}
static void bi64(struct buf *b, i64 v) {
    if (v < 0) { bput(b, "-", 1); bu64(b, -(u64)v); }
    else bu64(b, (u64)v);
}
static void bjson_str(struct buf *b, const char *s) {
    bput(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { char e[2] = {'\\', (char)c}; bput(b, e, 2); }
        else if (c < 0x20) bfmt(b, "\\u%04x", c);
        else bput(b, (const char *)&c, 1);
    }
    bput(b, "\"", 1);
}

/* frames between the agent's processes: a 4-byte length, then the bytes (one write) */
static int send_frame(int fd, const char *p, size_t n) {
    uint32_t len = (uint32_t)n;
    struct iovec iov[2] = {{&len, 4}, {(void *)p, n}};
    ssize_t k;
    while ((k = writev(fd, iov, 2)) < 0 && errno == EINTR) {}
    if (k < 0) return -1;
    if (k < 4) {
        if (write_all(fd, (char *)&len + k, (size_t)(4 - k)) < 0) return -1;
        k = 4;
    }
    return write_all(fd, p + (k - 4), n - (size_t)(k - 4));
}
/* a frame appended to a buffer, for one write of many frames */
static void bframe(struct buf *b, const char *p, size_t n) {
    uint32_t len = (uint32_t)n;
    bput(b, (const char *)&len, 4);
    bput(b, p, n);
}
/* a frame with a descriptor passed along (SCM_RIGHTS on the socket of a forked process) */
static int send_frame_fd(int fd, const char *p, size_t n, int pass) {
    uint32_t len = (uint32_t)n;
    struct iovec iov = {&len, 4};
    union { struct cmsghdr h; char space[CMSG_SPACE(sizeof(int))]; } c;
    struct msghdr mh = {0};
    memset(&c, 0, sizeof c);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = c.space;
    mh.msg_controllen = sizeof c.space;
    struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &pass, sizeof(int));
    ssize_t k;
    while ((k = sendmsg(fd, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR) {}
    if (k < 0) return -1;
    if (k < 4 && write_all(fd, (char *)&len + k, (size_t)(4 - k)) < 0) return -1;
    return write_all(fd, p, n);
}
/* A frame from a process of the program, or from main (sockets): its 4-byte length and as much
   of its bytes as fit in b in one read, the rest read after; on a socket that passes descriptors
   (``sock``: a forked process's, from main) with the one that came with it (-1: none).  Main asks
   each process one request at a time and each answers once, so nothing of a next frame can be
   there: bytes past the frame are not this protocol (-1, as a process gone).  A checkpoint's
   frames come several in a row (spill_up): ``exact`` reads the length, then the frame. */
static int recv_frame_fd(int fd, struct buf *b, int *passed, int sock, int exact) {
    uint32_t len = 0;
    union { struct cmsghdr h; char space[CMSG_SPACE(sizeof(int) * 4)]; } c;
    struct msghdr mh = {0};
    b->n = 0;
    bput(b, "", 0);
    struct iovec iov[2] = {{&len, 4}, {b->p, b->cap - 1}};
    mh.msg_iov = iov;
    mh.msg_iovlen = exact ? 1 : 2;
    if (sock) {
        mh.msg_control = c.space;
        mh.msg_controllen = sizeof c.space;
    }
    *passed = -1;
    ssize_t k;
    while ((k = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {}
    if (k <= 0) return -1;
    if (sock)
        for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h))
            if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
                int n = (int)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int));
                for (int i = 0; i < n; i++) {
                    int f;
                    memcpy(&f, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
                    if (*passed < 0) *passed = f;
                    else close(f);
                }
            }
    if (k < 4) {
        if (read_all(fd, (char *)&len + k, (size_t)(4 - k)) < 0) return -1;
        k = 4;
    }
    size_t got = (size_t)k - 4;
    if (got > len) return -1;
    if (b->cap < (size_t)len + 1) {
        b->p = realloc(b->p, (size_t)len + 1);
        if (!b->p) die("out of memory");
        b->cap = (size_t)len + 1;
    }
    if (got < len && read_all(fd, b->p + got, len - got) < 0) return -1;
    b->n = len;
    b->p[len] = 0;
    return 0;
}
static int recv_frame(int fd, struct buf *b) {
    int passed;
    return recv_frame_fd(fd, b, &passed, 0, 0);
}

/* frames read from a pipe as many a read as it holds (the supervisor's replies from main, main's
   requests from the supervisor): one read for a window of frames instead of two a frame */
struct frd { int fd; char *p; size_t start, have, cap; };

/* the next whole frame already read, into b (NUL-terminated); 0 when none is whole yet */
static int frd_take(struct frd *r, struct buf *b) {
    uint32_t len;
    if (r->have - r->start < 4) return 0;
    memcpy(&len, r->p + r->start, 4);
    if (r->have - r->start - 4 < len) return 0;
    b->n = 0;
    bput(b, r->p + r->start + 4, len);
    r->start += 4 + (size_t)len;
    return 1;
}

/* one read of what the pipe holds (waiting for something); its size, 0 at the end, -1 on error */
static ssize_t frd_fill(struct frd *r) {
    if (r->start) {
        memmove(r->p, r->p + r->start, r->have - r->start);
        r->have -= r->start;
        r->start = 0;
    }
    if (r->cap - r->have < (1 << 16)) {
        r->cap = r->have + (1 << 17);
        r->p = realloc(r->p, r->cap);
        if (!r->p) die("out of memory");
    }
    ssize_t k;
    while ((k = read(r->fd, r->p + r->have, r->cap - r->have)) < 0 && errno == EINTR) {}
    if (k > 0) r->have += (size_t)k;
    return k;
}

/* a whole frame is read and waiting */
static int frd_whole(const struct frd *r) {
    uint32_t len;
    if (r->have - r->start < 4) return 0;
    memcpy(&len, r->p + r->start, 4);
    return r->have - r->start - 4 >= len;
}

/* the next frame, waiting for it; -1 at the end of the pipe */
static int frd_next(struct frd *r, struct buf *b) {
    while (!frd_take(r, b))
        if (frd_fill(r) <= 0) return -1;
    return 0;
}

/* Move one of the agent's descriptors above the ones a program uses: the kernel hands out
   the lowest free number, and a program's fd must never be the agent's pipe. */
static int fd_floor;    /* found once: no call of a program sets RLIMIT_NOFILE */
static int high_fd(int fd) {
    if (!fd_floor) {
        struct rlimit rl;
        fd_floor = 1000;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur <= 1100)
            fd_floor = rl.rlim_cur / 2 > 3 ? (int)(rl.rlim_cur / 2) : 3;
    }
    int n = fcntl(fd, F_DUPFD_CLOEXEC, fd_floor);
    if (n < 0) return fd;
    close(fd);
    return n;
}
/* a connected pair of sockets, both above the program's descriptors */
static int high_socketpair(int p[2]) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0) return -1;
    p[0] = high_fd(p[0]);
    p[1] = high_fd(p[1]);
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* the protocol's JSON: flat requests                                                    */

#define MAX_ARGS 8
#define STR_CAP 4096

/* an argument: a number, a string, or (pipelined programs) an earlier named result plus a
   constant, {"ref":"a","add":4096}, which the supervisor resolves before the call runs */
struct arg { int is_str; int is_ref; u64 num; char ref[64]; };
struct req {
    char type[32];
    i64 id; int has_id;
    char proc[64];
    char name[64];
    char result[64]; int has_result;
    struct arg args[MAX_ARGS]; int nargs;
    int protocol;
    int batch;          /* part of a pipelined program: skipped once a call before it was refused */
    /* the string arguments, apart from the rest: a request touches the pages of the ones it has
       only (each process of a program faults in what it touches) */
    char strs[MAX_ARGS][STR_CAP];
};
struct rd { const char *p; const char *err; };

static void ws(struct rd *r) { while (*r->p == ' ' || *r->p == '\t' || *r->p == '\r' || *r->p == '\n') r->p++; }

static void put_utf8(char *out, size_t *n, size_t cap, unsigned cp) {
    unsigned char t[4]; int k;
    if (cp >= 0xDC80 && cp <= 0xDCFF) { t[0] = (unsigned char)(cp - 0xDC00); k = 1; }   /* surrogateescape */
    else if (cp < 0x80) { t[0] = (unsigned char)cp; k = 1; }
    else if (cp < 0x800) { t[0] = (unsigned char)(0xC0 | cp >> 6); t[1] = (unsigned char)(0x80 | (cp & 63)); k = 2; }
    else if (cp < 0x10000) { t[0] = (unsigned char)(0xE0 | cp >> 12); t[1] = (unsigned char)(0x80 | (cp >> 6 & 63));
        t[2] = (unsigned char)(0x80 | (cp & 63)); k = 3; }
    else { t[0] = (unsigned char)(0xF0 | cp >> 18); t[1] = (unsigned char)(0x80 | (cp >> 12 & 63));
        t[2] = (unsigned char)(0x80 | (cp >> 6 & 63)); t[3] = (unsigned char)(0x80 | (cp & 63)); k = 4; }
    for (int i = 0; i < k; i++) if (out && *n + 1 < cap) out[(*n)++] = (char)t[i];
}

static unsigned hex4(struct rd *r) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *r->p;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) { r->err = "bad \\u escape"; return 0; }
        v = v * 16 + (unsigned)d;
        r->p++;
    }
    return v;
}

static void str(struct rd *r, char *out, size_t cap) {
    size_t n = 0;
    if (*r->p != '"') { r->err = "expected a string"; return; }
    r->p++;
    while (*r->p && *r->p != '"' && !r->err) {
        unsigned char c = (unsigned char)*r->p++;
        if (c != '\\') { if (out && n + 1 < cap) out[n++] = (char)c; continue; }
        c = (unsigned char)*r->p++;
        switch (c) {
        case 'n': c = '\n'; break;
        case 't': c = '\t'; break;
        case 'r': c = '\r'; break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case '"': case '\\': case '/': break;
        case 'u': {
            unsigned cp = hex4(r);
            if (cp >= 0xD800 && cp < 0xDC00 && r->p[0] == '\\' && r->p[1] == 'u') {
                const char *save = r->p;
                r->p += 2;
                unsigned lo = hex4(r);
                if (lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                else r->p = save;
            }
            put_utf8(out, &n, cap, cp);
            continue;
        }
        default: r->err = "bad escape"; return;
        }
        if (out && n + 1 < cap) out[n++] = (char)c;
    }
    if (*r->p != '"') { r->err = "unterminated string"; return; }
    r->p++;
    if (out) out[n] = 0;
}

static u64 num(struct rd *r) {
    int neg = 0, digits = 0;
    u64 v = 0;
    if (*r->p == '-') { neg = 1; r->p++; }
    while (*r->p >= '0' && *r->p <= '9') { v = v * 10 + (u64)(*r->p++ - '0'); digits++; }
    if (!digits) r->err = "expected a number";
    if (*r->p == '.' || *r->p == 'e' || *r->p == 'E') r->err = "the protocol has integers only";
    return neg ? (u64)0 - v : v;
}

static void skip(struct rd *r, int depth);
static void skip_in(struct rd *r, char close, int depth) {
    r->p++;
    ws(r);
    if (*r->p == close) { r->p++; return; }
    for (;;) {
        ws(r);
        if (close == '}') { str(r, NULL, 0); ws(r); if (*r->p++ != ':') { r->err = "expected ':'"; return; } }
        skip(r, depth + 1);
        if (r->err) return;
        ws(r);
        if (*r->p == ',') { r->p++; continue; }
        if (*r->p == close) { r->p++; return; }
        r->err = "bad container"; return;
    }
}
static void skip(struct rd *r, int depth) {
    ws(r);
    if (depth > 32) { r->err = "nested too deeply"; return; }
    if (*r->p == '"') str(r, NULL, 0);
    else if (*r->p == '{') skip_in(r, '}', depth);
    else if (*r->p == '[') skip_in(r, ']', depth);
    else if (!strncmp(r->p, "null", 4)) r->p += 4;
    else if (!strncmp(r->p, "true", 4)) r->p += 4;
    else if (!strncmp(r->p, "false", 5)) r->p += 5;
    else num(r);
}

/* {"ref":"name","add":N} */
static void ref_arg(struct rd *r, struct arg *a) {
    a->is_ref = 1;
    a->num = 0;
    a->ref[0] = 0;
    r->p++;
    for (;;) {
        char key[16];
        ws(r);
        if (*r->p == '}') { r->p++; break; }
        str(r, key, sizeof key);
        if (r->err) return;
        ws(r);
        if (*r->p++ != ':') { r->err = "expected ':'"; return; }
        ws(r);
        if (!strcmp(key, "ref")) str(r, a->ref, sizeof a->ref);
        else if (!strcmp(key, "add")) a->num = num(r);
        else skip(r, 0);
        if (r->err) return;
        ws(r);
        if (*r->p == ',') { r->p++; continue; }
        if (*r->p == '}') { r->p++; break; }
        r->err = "expected ',' or '}' in a reference";
        return;
    }
    if (!a->ref[0]) r->err = "a reference needs a name";
}

static const char *parse_req(const char *line, struct req *m) {
    struct rd r = {line, NULL};
    memset(m, 0, offsetof(struct req, args));
    m->nargs = 0;
    ws(&r);
    if (*r.p != '{') return "a request must be a JSON object";
    r.p++;
    ws(&r);
    if (*r.p == '}') { r.p++; goto done; }
    for (;;) {
        char key[32];
        ws(&r);
        str(&r, key, sizeof key);
        if (r.err) return r.err;
        ws(&r);
        if (*r.p++ != ':') return "expected ':'";
        ws(&r);
        if (!strcmp(key, "type")) str(&r, m->type, sizeof m->type);
        else if (!strcmp(key, "proc")) str(&r, m->proc, sizeof m->proc);
        else if (!strcmp(key, "name")) str(&r, m->name, sizeof m->name);
        else if (!strcmp(key, "id") && *r.p != 'n') { m->id = (i64)num(&r); m->has_id = 1; }
        else if (!strcmp(key, "protocol")) m->protocol = (int)num(&r);
        else if (!strcmp(key, "result") && *r.p == '"') { str(&r, m->result, sizeof m->result); m->has_result = 1; }
        else if (!strcmp(key, "batch")) { m->batch = *r.p == 't'; skip(&r, 0); }
        else if (!strcmp(key, "args") && *r.p == '[') {
            r.p++;
            ws(&r);
            if (*r.p == ']') r.p++;
            else for (;;) {
                ws(&r);
                if (m->nargs >= MAX_ARGS) return "too many arguments";
                struct arg *a = &m->args[m->nargs++];
                a->is_str = a->is_ref = 0;
                if (*r.p == '"') { a->is_str = 1; str(&r, m->strs[m->nargs - 1], STR_CAP); }
                else if (*r.p == '{') ref_arg(&r, a);
                else a->num = num(&r);
                if (r.err) return r.err;
                ws(&r);
                if (*r.p == ',') { r.p++; continue; }
                if (*r.p == ']') { r.p++; break; }
                return "bad argument list";
            }
        }
        else skip(&r, 0);
        if (r.err) return r.err;
        ws(&r);
        if (*r.p == ',') { r.p++; continue; }
        if (*r.p == '}') { r.p++; break; }
        return "expected ',' or '}'";
    }
done:
    ws(&r);
    if (*r.p) return "trailing bytes after the object";
    if (!m->type[0]) return "a request needs a string 'type'";
    return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* page ranges: what the program mapped itself, and its MADV_DONTFORK ranges              */

struct range { u128 s, e; };
struct ranges { struct range *r; int n, cap; };

static void rg_remove(struct ranges *g, u128 s, u128 e) {
    struct range *out = malloc(sizeof *out * (size_t)(g->n * 2 + 1));
    int k = 0;
    for (int i = 0; i < g->n; i++) {
        u128 a = g->r[i].s, b = g->r[i].e;
        if (b <= s || a >= e) { out[k++] = g->r[i]; continue; }
        if (a < s) out[k++] = (struct range){a, s};
        if (b > e) out[k++] = (struct range){e, b};
    }
    free(g->r);
    g->r = out;
    g->n = k;
    g->cap = g->n * 2 + 1;
}
static void rg_add(struct ranges *g, u128 s, u128 e) {
    rg_remove(g, s, e);
    if (g->n + 1 > g->cap) { g->cap = g->n * 2 + 2; g->r = realloc(g->r, sizeof *g->r * (size_t)g->cap); }
    int i = g->n;
    while (i > 0 && g->r[i - 1].s > s) { g->r[i] = g->r[i - 1]; i--; }
    g->r[i] = (struct range){s, e};
    g->n++;
}
/* the first part of [s, e) not in the set, or 0 if it is covered */
static int rg_uncovered(const struct ranges *g, u128 s, u128 e, struct range *gaps, int maxgaps) {
    u128 cur = s;
    int k = 0;
    for (int i = 0; i < g->n; i++) {
        u128 a = g->r[i].s, b = g->r[i].e;
        if (b <= cur) continue;
        if (a >= e) break;
        if (a > cur && k < maxgaps) gaps[k++] = (struct range){cur, a};
        if (b > cur) cur = b;
    }
    if (cur < e && k < maxgaps) gaps[k++] = (struct range){cur, e};
    return k;
}

static u128 align_up(u128 n) { return (n + PAGE - 1) & ~(u128)(PAGE - 1); }

/* ------------------------------------------------------------------------------------ */
/* /proc/self/maps                                                                       */

struct map { u64 s, e; char perms[5]; };

/* a hexadecimal number at *p, *p moved past it; 0 when there is none */
static int hex_at(const char **p, u64 *v) {
    const char *c = *p;
    u64 x = 0;
    for (;; c++) {
        int d = *c >= '0' && *c <= '9' ? *c - '0' : *c >= 'a' && *c <= 'f' ? *c - 'a' + 10 : -1;
        if (d < 0) break;
        x = x * 16 + (u64)d;
    }
    if (c == *p) return 0;
    *v = x;
    *p = c;
    return 1;
}

/* "start-end perms ..." (fs/proc/task_mmu.c show_vma_header_prefix: lower-case hex, one space) */
static int maps_line(const char *line, struct map *m) {
    const char *c = line;
    if (!hex_at(&c, &m->s) || *c++ != '-' || !hex_at(&c, &m->e) || *c++ != ' ') return 0;
    for (int i = 0; i < 4; i++) {
        if (!c[i] || c[i] == ' ' || c[i] == '\n') return 0;
        m->perms[i] = c[i];
    }
    m->perms[4] = 0;
    return 1;
}

/* /proc/self/maps a block at a time, a mapping at a time: a process at vm.max_map_count has
   megabytes of it and no room to grow its heap (reserve_heap), so it is never held whole.  One
   walk at a time per process (the block is static). */
#define MAPS_BLOCK (1 << 16)
static char maps_block[MAPS_BLOCK];
struct maps_walk { int fd; size_t at, have; int end, skip; };

static void maps_begin(struct maps_walk *w) {
    w->fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    w->at = w->have = 0;
    w->skip = 0;
    w->end = w->fd < 0;
}

/* the walk ended, whether or not it read every mapping */
static void maps_end(struct maps_walk *w) {
    if (!w->end) close(w->fd);
    w->end = 1;
}

/* the next mapping (0 at the end) */
static int maps_next(struct maps_walk *w, struct map *m) {
    for (;;) {
        char *line = maps_block + w->at;
        char *nl = memchr(line, '\n', w->have - w->at);
        if (nl) {
            int skip = w->skip;
            *nl = 0;
            w->at = (size_t)(nl - maps_block) + 1;
            w->skip = 0;
            if (!skip && maps_line(line, m)) return 1;
            continue;
        }
        if (w->end) {       /* a last line without a newline */
            maps_block[w->have] = 0;
            int ok = w->at < w->have && !w->skip && maps_line(line, m);
            w->at = w->have;
            return ok;
        }
        memmove(maps_block, line, w->have - w->at);
        w->have -= w->at;
        w->at = 0;
        if (w->have == MAPS_BLOCK - 1) {     /* a line longer than the block: its start is read, the rest dropped */
            maps_block[w->have] = 0;
            int ok = !w->skip && maps_line(maps_block, m);
            w->have = 0;
            w->skip = 1;
            if (ok) return 1;
            continue;
        }
        ssize_t k = read(w->fd, maps_block + w->have, MAPS_BLOCK - 1 - w->have);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            w->end = 1;
            close(w->fd);
        } else w->have += (size_t)k;
    }
}

/* ------------------------------------------------------------------------------------ */
/* the state of one process of a program                                                 */

/* a process of the program as the main process reaches it: every one of them, a grandchild
   too, has a socket of its own to main (a fork in process P is asked of P with the socket the
   new process will serve on, passed with SCM_RIGHTS), so it answers main directly and stays
   reachable when the process that forked it exits (Linux reparents an orphan; it keeps
   running, as in the model: model/os/processes.py apply_exit ends only the caller).
   ``direct``: forked by main itself (main waits for it). */
struct servant { char name[64]; pid_t pid; int fd; int direct; };

static struct {
    char name[64];                 /* "main", or the name the program's fork gave */
    struct ranges owned, dontfork;
    int *fds; int nfds, capfds;    /* descriptors the program made */
    char shm_prefix[64];
    int shm_private;
    char tmpdir[512];
    int nfiles;
    int pagemap, pagemap_pfns;
    long flt0[2];
    struct servant *sv; int nsv;
    int forked;                    /* processes this process forked (fork): it has children to reap */
    int up_r, up_w;                /* frames from, and to, main (the supervisor, for main) */
    int out;                       /* main: the harness's pipe, which main answers on itself */
    int up_sock;                   /* up_r is a socket (a forked process): descriptors come with frames */
} K;

/* main's answers to the harness, written in blocks (with --answer-blocks): while more requests
   wait, the answers to the quiet calls (quiet_call) gather here; they go out before main waits for
   a request, before any other call runs, and when main dies of a signal it catches (on_fault,
   on_abort).  Only where the agent runs on the kernel itself: under an emulator the emulator may
   die of its own accord in any call, and the answers gathered would be lost with it. */
#define PEND_MAX 2048
static int g_blocks;
static struct buf pend;
static int pend_fd = -1;           /* main's pipe to the harness; -1 in every other process */

static void flush_pend(void) {
    size_t done = 0;
    while (done < pend.n) {        /* write(2) only: this runs in a signal handler too */
        ssize_t k = write(pend_fd, pend.p + done, pend.n - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        done += (size_t)k;
    }
    pend.n = 0;
}

static int g_shm_private_wanted;   /* probed at start: a private /dev/shm can be made */
static int g_cap_sys_admin;        /* the supervisor's CAP_SYS_ADMIN, which each main starts with */
static const char *g_tmp;          /* $TMPDIR, read once: where open_file's directory goes */
static char refusal[600];          /* set by a refused call */
static int g_passed = -1;          /* the descriptor that came with this request (a fork's socket) */

/* a capability in this process's effective set (capget: what /proc/self/status shows as CapEff,
   without opening it) */
static int has_cap(int bit) {
    struct { uint32_t version; int pid; } head = {0x20080522, 0};      /* _LINUX_CAPABILITY_VERSION_3 */
    struct { uint32_t effective, permitted, inheritable; } data[2];
    if (syscall(SYS_capget, &head, data) != 0) return 0;
    return (int)(data[bit / 32].effective >> (bit % 32) & 1);
}

static void fds_add(int fd) {
    for (int i = 0; i < K.nfds; i++) if (K.fds[i] == fd) return;
    if (K.nfds == K.capfds) { K.capfds = K.capfds ? K.capfds * 2 : 16; K.fds = realloc(K.fds, sizeof(int) * (size_t)K.capfds); }
    K.fds[K.nfds++] = fd;
}
static int fds_has(int fd) { for (int i = 0; i < K.nfds; i++) if (K.fds[i] == fd) return 1; return 0; }
static void fds_del(int fd) { for (int i = 0; i < K.nfds; i++) if (K.fds[i] == fd) { K.fds[i] = K.fds[--K.nfds]; return; } }

#define PAGEMAP_UNOPENED (-2)

/* The process's /proc/self/pagemap (pfn_of, thp_mapped), opened at the first call that reads it:
   a program seldom asks, and the open was a lookup in /proc for every process of every program.
   Opened before the calls that could make a later open differ, as if at the process's start:
   drop_privileges (the process is no longer dumpable, so its /proc files are root's) and the calls
   that make descriptors (the agent's goes above them, and the table must have room for it). */
static void pagemap_open(void) {
    if (K.pagemap != PAGEMAP_UNOPENED) return;
    K.pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (K.pagemap >= 0) K.pagemap = high_fd(K.pagemap);
}

/* ``cap_sys_admin``: whether the process has CAP_SYS_ADMIN, as the process that forked it knows
   (-1: asked here) */
static void start_process(int cap_sys_admin) {
    struct rusage ru;
    K.pagemap = PAGEMAP_UNOPENED;
    /* CAP_SYS_ADMIN at the start: fs/proc/task_mmu.c pagemap_read */
    K.pagemap_pfns = cap_sys_admin >= 0 ? cap_sys_admin : has_cap(21);
    getrusage(RUSAGE_SELF, &ru);
    K.flt0[0] = ru.ru_minflt;
    K.flt0[1] = ru.ru_majflt;
}

static int private_dev_shm(void) {
    if (unshare(CLONE_NEWNS) != 0) return 0;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return 0;
    return mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") == 0;
}

/* The supervisor's own private /dev/shm, made once (g_shm_ns) and emptied after each program
   (clear_dev_shm, once every process of the program has ended): each program finds it as a
   tmpfs of its own would be, empty, without a namespace and a mount made and torn down per
   program.  Where the supervisor cannot make it, each main makes its own as before. */
static int g_shm_ns;

static void clear_dev_shm(void) {
    int dfd = open("/dev/shm", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char dbuf[8192];
    long k;
    if (dfd < 0) return;
    while ((k = syscall(SYS_getdents64, dfd, dbuf, sizeof dbuf)) > 0)
        for (long off = 0; off < k;) {
            unsigned short reclen = *(unsigned short *)(dbuf + off + 16);
            const char *name = dbuf + off + 19;
            if (strcmp(name, ".") && strcmp(name, "..") && unlinkat(dfd, name, 0) != 0) unlinkat(dfd, name, AT_REMOVEDIR);
            off += reclen;
        }
    close(dfd);
}

/* ------------------------------------------------------------------------------------ */
/* an outcome                                                                            */

struct out {
    int has_value; i64 value; int value_unsigned;
    const char *err;               /* errno name */
    const char *sig;               /* signal name */
    int has_after_fetch; int after_fetch;
    char *bignum;                  /* a value too wide for 64 bits, in decimal */
};
static char errtmp[32];

static struct out ok_value(u64 v) { struct out o = {0}; o.has_value = 1; o.value = (i64)v; o.value_unsigned = 1; return o; }
static struct out fail_errno(int e) { struct out o = {0}; o.has_value = 1; o.value = -1; o.err = errno_name(e, errtmp); return o; }
static struct out none(void) { struct out o = {0}; return o; }

static struct out sysret(long r) {
    if (r == -1) return fail_errno(errno);
    return ok_value((u64)r);
}

#define REFUSE(...) do { snprintf(refusal, sizeof refusal, __VA_ARGS__); return none(); } while (0)

/* Refuse unless every page of [s, e) is the program's or not mapped at all. */
static int check_safe(u128 s, u128 e) {
    struct range gaps[64];
    s &= ~(u128)(PAGE - 1);
    e = align_up(e);
    if (e > ((u128)1 << 64)) e = (u128)1 << 64;
    int ng = rg_uncovered(&K.owned, s, e, gaps, 64);
    if (!ng) return 1;
    struct maps_walk w;
    struct map m;
    maps_begin(&w);
    while (maps_next(&w, &m))
        for (int j = 0; j < ng; j++)
            if (m.s < gaps[j].e && m.e > gaps[j].s) {
                snprintf(refusal, sizeof refusal, "[%#" PRIx64 ", %#" PRIx64 ") overlaps %#" PRIx64 "-%#" PRIx64
                         " %s, which the program did not map", (u64)gaps[j].s, (u64)gaps[j].e, m.s, m.e, m.perms);
                maps_end(&w);
                return 0;
            }
    maps_end(&w);
    return 1;
}
static u128 min128(u128 a, u128 b) { return a < b ? a : b; }

/* ------------------------------------------------------------------------------------ */
/* access probes                                                                         */

enum { MODE_NONE, MODE_PROBE, MODE_FETCH };
static volatile sig_atomic_t fault_mode;
static sigjmp_buf probe_jb;
static volatile u64 fetch_target;

static void on_fault(int sig, siginfo_t *si, void *ucv) {
    ucontext_t *uc = ucv;
    if (fault_mode == MODE_PROBE) {
        fault_mode = MODE_NONE;
        siglongjmp(probe_jb, sig == SIGBUS ? 2 : 1);
    }
    if (fault_mode == MODE_FETCH) {
        u64 rip = (u64)uc->uc_mcontext.gregs[REG_RIP];
        u64 err = (u64)uc->uc_mcontext.gregs[REG_ERR];
        u64 trapno = (u64)uc->uc_mcontext.gregs[REG_TRAPNO];
        /* A kernel's frame records the #PF (trap 14) and its error code: the fetch itself
           faulted iff the I/D bit is set at the target RIP.  QEMU linux-user's frame has no
           trap number (-1) and no I/D bit (docs/findings/qemu-user.md): there the fault is
           the fetch's iff both the RIP and the faulting address are the target. */
        int fetch_fault = sig == SIGSEGV && rip == fetch_target &&
                          (trapno == 14 ? (err & 0x10) != 0 : (u64)(uintptr_t)si->si_addr == fetch_target);
        int fetch_bus = sig == SIGBUS && rip == fetch_target;
        _exit(fetch_fault ? 10 : fetch_bus ? 13 : 11);
    }
    /* a fault of the agent's own: the answers before it go out, then die of it */
    if (pend_fd >= 0) flush_pend();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void on_abort(int sig) {
    if (pend_fd >= 0) flush_pend();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP};
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
    signal(SIGABRT, on_abort);
}

/* 0: the access went through (value in *v); else SIGSEGV (1) or SIGBUS (2).  The signal mask is
   neither saved nor restored (two system calls an access): the handler runs with SA_NODEFER and
   an empty sa_mask, so the mask it jumps back with is the one the access began with. */
static int probe_access(u64 addr, int store, unsigned char value, unsigned char *v) {
    int r = sigsetjmp(probe_jb, 0);
    if (r) return r;
    fault_mode = MODE_PROBE;
    if (store) *(volatile unsigned char *)(uintptr_t)addr = value;
    else *v = *(volatile unsigned char *)(uintptr_t)addr;
    fault_mode = MODE_NONE;
    return 0;
}

static struct out do_load(u64 addr) {
    unsigned char v = 0;
    if (!check_safe(addr, (u128)addr + 1)) return none();
    int r = probe_access(addr, 0, 0, &v);
    if (r) { struct out o = none(); o.sig = r == 2 ? "SIGBUS" : "SIGSEGV"; return o; }
    return ok_value(v);
}

static struct out do_store(u64 addr, u64 value) {
    if (!check_safe(addr, (u128)addr + 1)) return none();
    int r = probe_access(addr, 1, (unsigned char)value, NULL);
    if (r) { struct out o = none(); o.sig = r == 2 ? "SIGBUS" : "SIGSEGV"; return o; }
    return none();
}

static int in_dontfork(u64 addr) {
    struct range g[1];
    return rg_uncovered(&K.dontfork, addr, (u128)addr + 1, g, 1) == 0;
}

static struct out do_fetch(u64 addr) {
    if (!check_safe(addr, (u128)addr + 1)) return none();
    if (in_dontfork(addr))
        REFUSE("%#" PRIx64 " is MADV_DONTFORK memory, which a forked probe cannot reach", addr);
    fetch_target = addr;
    pid_t pid = fork();
    if (pid < 0) REFUSE("fork for the fetch probe failed: %s", strerror(errno));
    if (pid == 0) {
        pend_fd = -1;
        if (K.out > 2) close(K.out);      /* the harness sees the end of its pipe when main and the supervisor are gone */
        fault_mode = MODE_FETCH;
        alarm(1);
        ((void (*)(void))(uintptr_t)addr)();
        _exit(12);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
    struct out o = none();
    if (code == 10) o.sig = "SIGSEGV";
    else if (code == 13) o.sig = "SIGBUS";
    else { o.has_after_fetch = 1; o.after_fetch = code; }
    return o;
}

/* ------------------------------------------------------------------------------------ */
/* the calls                                                                             */

static int fd_safe(u64 fd);

static struct out do_mmap(u64 addr, u64 length, u64 prot, u64 flags, u64 fd, u64 offset) {
    /* the harness's descriptors (0, 1, 2, its pipes) are not the program's */
    if (!(flags & 0x20) && !fd_safe(fd)) return none();
    if ((flags & MAP_FIXED_FLAG) && length > 0 && addr < USER_TOP &&
        !check_safe(addr, min128((u128)addr + length, USER_TOP))) return none();
    long r = syscall(SYS_mmap, addr, length, prot, flags, fd, offset);
    if (r != -1) {
        u64 v = (u64)r;
        rg_remove(&K.dontfork, v, v + align_up(length));
        rg_add(&K.owned, v, v + align_up(length));
    }
    return sysret(r);
}

static struct out do_munmap(u64 addr, u64 length) {
    /* mm/vma.c do_vmi_munmap fails these before touching anything */
    int harmless = (addr & ~PAGE_MASK) || addr > TASK_SIZE || length > TASK_SIZE - addr || align_up(length) == 0;
    if (!harmless && !check_safe(addr, (u128)addr + length)) return none();
    long r = syscall(SYS_munmap, addr, length);
    if (r == 0) {
        u128 e = (u128)addr + align_up(length);
        rg_remove(&K.dontfork, addr, e);
        rg_remove(&K.owned, addr, e);
        if (addr < WINDOW_HI && (u128)addr + length > WINDOW_LO) rg_add(&K.owned, WINDOW_LO, WINDOW_HI);
    }
    return sysret(r);
}

static struct out do_mprotect(u64 addr, u64 length, u64 prot) {
    /* mm/mprotect.c do_mprotect_pkey fails these before touching anything */
    int harmless = (addr & ~PAGE_MASK) || length == 0 || (u128)addr + align_up(length) > UINT64_MAX ||
                   (prot & ~(u64)0x0300000F) || (prot & 0x03000000) == 0x03000000;
    if (!harmless && addr < USER_TOP && !check_safe(addr, min128((u128)addr + length, USER_TOP))) return none();
#ifdef AGENT_BUG_MPROTECT_SHORT
    if (length > PAGE) length -= PAGE;
#endif
#ifdef AGENT_BUG_DIE_ON_PROT_NONE
    if (prot == 0) raise(AGENT_BUG_DIE_ON_PROT_NONE);
#endif
    return sysret(syscall(SYS_mprotect, addr, length, prot));
}

static struct out do_mremap(u64 addr, u64 old_size, u64 new_size, u64 flags, u64 new_addr) {
    if (old_size && addr < USER_TOP && !check_safe(addr, min128((u128)addr + old_size, USER_TOP))) return none();
    if ((flags & MREMAP_FIXED_FLAG) && new_size && new_addr < USER_TOP &&
        !check_safe(new_addr, min128((u128)new_addr + new_size, USER_TOP))) return none();
    long r = syscall(SYS_mremap, addr, old_size, new_size, flags, new_addr);
    if (r != -1) {
        u64 v = (u64)r;
        /* the moved (or grown) VMA keeps VM_DONTCOPY: its new range is no probe's either
           (a fetch there faulted in the forked probe; found by fuzzing) */
        int dontfork = 0;
        for (int i = 0; i < K.dontfork.n; i++)
            if (K.dontfork.r[i].s < (u128)addr + align_up(old_size) && K.dontfork.r[i].e > addr) dontfork = 1;
        if (!(flags & MREMAP_DONTUNMAP_FLAG) && v != addr) rg_remove(&K.owned, addr, (u128)addr + align_up(old_size));
        rg_add(&K.owned, v, (u128)v + align_up(new_size));
        rg_add(&K.owned, WINDOW_LO, WINDOW_HI);
        if (dontfork) rg_add(&K.dontfork, v, (u128)v + align_up(new_size));
    }
    return sysret(r);
}

static int range_safe(u64 addr, u64 length) {
    if (addr & ~PAGE_MASK) return 1;
    u128 end = (u128)addr + align_up(length);
    if (end > addr && addr < USER_TOP) return check_safe(addr, min128(end, USER_TOP));
    return 1;
}

/* mlock family, mincore, mbind: the result depends on every page of the range */
static int lock_range_safe(u64 addr, u64 length) {
    u128 start = addr & PAGE_MASK;
    u128 end = align_up((u128)addr + length);
    if (end > start && start < USER_TOP) return check_safe(start, min128(end, USER_TOP));
    return 1;
}

static struct out do_madvise(u64 addr, u64 length, u64 advice) {
    if (!range_safe(addr, length)) return none();
    if ((advice == 100 || advice == 101) && length && has_cap(21)) {
        /* MADV_HWPOISON, MADV_SOFT_OFFLINE with CAP_SYS_ADMIN (mm/madvise.c madvise_inject_error) */
        snprintf(refusal, sizeof refusal, "MADV_HWPOISON and MADV_SOFT_OFFLINE with CAP_SYS_ADMIN take frames out of the machine");
        return none();
    }
    long r = syscall(SYS_madvise, addr, length, advice);
    if ((advice == 10 || advice == 11) && !(addr & ~PAGE_MASK)) {     /* MADV_DONTFORK, MADV_DOFORK */
        u128 end = (u128)addr + align_up(length);
        if (advice == 10) rg_add(&K.dontfork, addr, end);
        else rg_remove(&K.dontfork, addr, end);
    }
    return sysret(r);
}

static struct out do_mseal(u64 addr, u64 length, u64 flags) {
    /* mm/mseal.c do_mseal fails these before touching anything: no safety check needed */
    u128 plen = align_up(length);
    int harmless = flags || (addr & ~PAGE_MASK) || (length && !(u64)plen) || (u128)addr + plen > (u128)~(u64)0;
    if (!harmless && !range_safe(addr, length)) return none();
    return sysret(syscall(462, addr, length, flags));      /* x86-64 __NR_mseal (Linux 6.10) */
}

static struct out do_msync(u64 addr, u64 length, u64 flags) {
#ifdef AGENT_BUG_CRASH_ON_MSYNC
    abort();
#endif
    if (!range_safe(addr, length)) return none();
    return sysret(syscall(SYS_msync, addr, length, flags));
}

/* a bit vector as a decimal number (a residency vector wider than 64 pages) */
static char *bits_decimal(const unsigned char *vec, u64 n) {
    size_t limbs = (size_t)((n + 31) / 32);
    uint32_t *x = calloc(limbs ? limbs : 1, 4);
    for (u64 i = 0; i < n; i++) if (vec[i] & 1) x[i / 32] |= 1u << (i % 32);
    size_t cap = (size_t)(n / 3 + 16);
    char *digits = malloc(cap);
    size_t nd = 0, top = limbs;
    while (top && !x[top - 1]) top--;
    while (top) {
        uint64_t rem = 0;
        for (size_t i = top; i-- > 0;) {
            uint64_t cur = (rem << 32) | x[i];
            x[i] = (uint32_t)(cur / 1000000000u);
            rem = cur % 1000000000u;
        }
        while (top && !x[top - 1]) top--;
        for (int k = 0; k < 9 && (top || rem); k++) { digits[nd++] = (char)('0' + rem % 10); rem /= 10; }
    }
    if (!nd) digits[nd++] = '0';
    char *outp = malloc(nd + 1);
    for (size_t i = 0; i < nd; i++) outp[i] = digits[nd - 1 - i];
    outp[nd] = 0;
    free(digits);
    free(x);
    return outp;
}

static unsigned char mincore_vec[1 << 20];

static struct out do_mincore(u64 addr, u64 length) {
    if (!(addr & ~PAGE_MASK) && !lock_range_safe(addr, length)) return none();
    u64 npages = length ? (u64)(((u128)length + PAGE - 1) / PAGE) : 0;
    u64 room = npages;
    if (npages > 4096) {
        /* the kernel writes the vector chunk by chunk, also for a mapped prefix before a
           hole: room for the mapped prefix of the range (and one more page) */
        struct maps_walk w;
        struct map m;
        u64 cur = addr;
        maps_begin(&w);
        while (maps_next(&w, &m)) if (m.s <= cur && cur < m.e) cur = m.e;
        maps_end(&w);
        room = cur > addr ? (((cur - addr) / PAGE + 1) < npages ? (cur - addr) / PAGE + 1 : npages) : 1;
    }
    unsigned char *vec = mincore_vec;
    size_t size = room ? (size_t)room : 1;
    int mapped = 0;
    if (size > sizeof mincore_vec) {
        vec = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (vec == MAP_FAILED) REFUSE("no room for a mincore vector of %" PRIu64 " pages", room);
        mapped = 1;
    } else memset(vec, 0, size);
    long r = syscall(SYS_mincore, addr, length, vec);
    struct out o;
    if (r == -1) o = fail_errno(errno);
    else {
        u64 k = room < npages ? room : npages;
        if (k <= 64) {
            u64 v = 0;
            for (u64 i = 0; i < k; i++) if (vec[i] & 1) v |= 1ULL << i;
            o = ok_value(v);
        } else { o = ok_value(0); o.bignum = bits_decimal(vec, k); }
    }
    if (mapped) munmap(vec, size);
    return o;
}

static struct out do_mlock(u64 a, u64 l) { if (!lock_range_safe(a, l)) return none(); return sysret(syscall(SYS_mlock, a, l)); }
static struct out do_mlock2(u64 a, u64 l, u64 f) { if (!lock_range_safe(a, l)) return none(); return sysret(syscall(SYS_mlock2, a, l, f)); }
static struct out do_munlock(u64 a, u64 l) { if (!lock_range_safe(a, l)) return none(); return sysret(syscall(SYS_munlock, a, l)); }

static struct out do_set_memlock_limit(u64 soft) {
    struct rlimit rl;
    getrlimit(RLIMIT_MEMLOCK, &rl);
    rl.rlim_cur = (i64)soft < 0 ? RLIM_INFINITY : soft;
    if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
        return fail_errno(errno == EPERM ? EINVAL : errno);   /* Python's resource module: both are ValueError */
    return ok_value(0);
}

static struct out do_set_fsize_limit(u64 soft) {
    struct rlimit rl;
    getrlimit(RLIMIT_FSIZE, &rl);
    rl.rlim_cur = (i64)soft < 0 ? RLIM_INFINITY : soft;
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        return fail_errno(errno == EPERM ? EINVAL : errno);   /* as set_memlock_limit */
    return ok_value(0);
}

static struct out do_drop_privileges(void) {
    pagemap_open();
    if (setgroups(0, NULL) != 0 || setresgid(NOBODY, NOBODY, NOBODY) != 0 || setresuid(NOBODY, NOBODY, NOBODY) != 0)
        return fail_errno(errno);
    return ok_value(0);
}

/* shm names: with a private /dev/shm exactly as the program wrote them; else with a prefix
   of this run's own (names the C library rejects stay as they are, so the errno is its own) */
static void shm_name(const char *name, char *out, size_t cap) {
    if (K.shm_private) { snprintf(out, cap, "%s", name); return; }
    const char *n = name;
    while (*n == '/') n++;
    size_t len = strlen(n);
    if (!len || strchr(n, '/') || !strcmp(n, ".") || !strcmp(n, "..") || len > 255) { snprintf(out, cap, "%s", name); return; }
    if (strlen(K.shm_prefix) + len > 255) {
        u64 h = 1469598103934665603ULL;
        for (const char *c = n; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ULL;
        snprintf(out, cap, "/%s%016" PRIx64, K.shm_prefix, h);
        return;
    }
    snprintf(out, cap, "/%s%s", K.shm_prefix, n);
}

static struct out do_shm_open(const char *name, u64 oflag, u64 mode) {
    char real[STR_CAP + 80];
    pagemap_open();
    shm_name(name, real, sizeof real);
    int fd = shm_open(real, (int)oflag, (mode_t)mode);
    if (fd < 0) return fail_errno(errno);
    fcntl(fd, F_SETFD, 0);
    fds_add(fd);
    return ok_value((u64)fd);
}

static struct out do_shm_unlink(const char *name) {
    char real[STR_CAP + 80];
    shm_name(name, real, sizeof real);
    if (shm_unlink(real) < 0) return fail_errno(errno);
    return ok_value(0);
}

static struct out do_memfd_create(const char *name, u64 flags) {
    pagemap_open();
    long r = syscall(SYS_memfd_create, name, flags & ~(u64)1);
    if (r != -1) fds_add((int)r);
    return sysret(r);
}

static struct out do_open_file(u64 size, u64 oflag) {
    char path[700];
    pagemap_open();
    K.nfiles++;
    snprintf(path, sizeof path, "%s/f%d-%d", K.tmpdir, (int)getpid(), K.nfiles);
    struct stat st;
    if (stat(K.tmpdir, &st) != 0) {
        if (mkdir(K.tmpdir, 0700) != 0) return fail_errno(errno);
        chmod(K.tmpdir, 01777);       /* a process that dropped its privileges may make files too */
    }
    int fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) return fail_errno(errno);
    if ((i64)size < 0 || ftruncate(fd, (off_t)size) != 0) {
        int e = (i64)size < 0 ? EINVAL : errno;
        close(fd);
        return fail_errno(e ? e : EINVAL);
    }
    close(fd);
    fd = open(path, (int)(oflag & (3 | O_APPEND)));   /* the access mode and O_APPEND */
    if (fd < 0) return fail_errno(errno);
    fds_add(fd);
    return ok_value((u64)fd);
}

/* The program holds only the read end (pipe() returns one descriptor): the write end is closed at
   once, so no descriptor the model does not know stays open, and a read is end of file. */
static struct out do_pipe(void) {
    int p[2];
    pagemap_open();
    if (pipe(p) != 0) return fail_errno(errno);
    close(p[1]);
    fds_add(p[0]);
    return ok_value((u64)p[0]);
}

static int fd_safe(u64 fd) {
    u64 f = fd & 0xffffffffu;      /* the kernel reads a descriptor as unsigned int: 0x100000000 is 0 */
    if (f > (1 << 20) || fds_has((int)f)) return 1;
    struct stat st;
    if (fstat((int)f, &st) != 0) return 1;     /* not open: EBADF, touching nothing */
    snprintf(refusal, sizeof refusal, "descriptor %d belongs to the harness, not the program", (int)f);
    return 0;
}

static struct out do_ftruncate(u64 fd, u64 length) {
    if (!fd_safe(fd)) return none();
    return sysret(syscall(SYS_ftruncate, fd, length));
}

/* read, write, pread, pwrite, lseek: one byte read (256: nothing read, end of file), count bytes
   of one value written */
static struct out do_read_one(u64 fd, int positional, u64 offset) {
    unsigned char c = 0;
    if (!fd_safe(fd)) return none();
    long r = positional ? syscall(SYS_pread64, fd, &c, 1, offset) : syscall(SYS_read, fd, &c, 1);
    if (r < 0) return sysret(r);
    return ok_value(r == 1 ? c : 256);
}

static struct out do_write_n(u64 fd, int positional, u64 offset, u64 value, u64 count) {
    static unsigned char buf[1 << 20];
    if (!fd_safe(fd)) return none();
    if (count > sizeof buf) {
        snprintf(refusal, sizeof refusal, "writes of more than 1 MiB are not staged");
        return none();
    }
    memset(buf, (int)(value & 0xff), (size_t)count);
    return sysret(positional ? syscall(SYS_pwrite64, fd, buf, count, offset) : syscall(SYS_write, fd, buf, count));
}

static struct out do_lseek(u64 fd, u64 offset, u64 whence) {
    if (!fd_safe(fd)) return none();
    return sysret(syscall(SYS_lseek, fd, offset, whence));
}

static struct out do_close(u64 fd) {
    if (!fd_safe(fd)) return none();
    long r = syscall(SYS_close, fd);
    if (r == 0) fds_del((int)fd);
    return sysret(r);
}

static int pagemap_pfn(u64 addr, u64 *pfn) {
    pagemap_open();
    if (K.pagemap < 0) { snprintf(refusal, sizeof refusal, "/proc/self/pagemap is not readable here"); return 0; }
    if (!K.pagemap_pfns) {
        snprintf(refusal, sizeof refusal, "/proc/self/pagemap shows frame numbers only to CAP_SYS_ADMIN, which this process lacks");
        return 0;
    }
    u64 e = 0;
    if (pread(K.pagemap, &e, 8, (off_t)((addr >> 12) * 8)) != 8) e = 0;
    *pfn = e >> 63 ? e & ((1ULL << 55) - 1) : 0;
    return 1;
}

static struct out do_pfn_of(u64 addr) {
    u64 pfn;
    if (!check_safe(addr, (u128)addr + 1) || !pagemap_pfn(addr, &pfn)) return none();
    return ok_value(pfn);
}

static struct out do_thp_mapped(u64 addr) {
    u64 pfn, flags = 0;
    if (!check_safe(addr, (u128)addr + 1) || !pagemap_pfn(addr, &pfn)) return none();
    if (!pfn) return ok_value(0);
    int fd = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
    if (fd < 0) REFUSE("/proc/kpageflags is not readable here");
    if (pread(fd, &flags, 8, (off_t)(pfn * 8)) != 8) flags = 0;
    close(fd);
    return ok_value(flags >> KPF_THP & 1);
}

static void faults(long out[2]) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    out[0] = ru.ru_minflt - K.flt0[0];
    out[1] = ru.ru_majflt - K.flt0[1];
}

static struct out do_get_node(u64 addr) {
    if (!check_safe(addr, (u128)addr + 1)) return none();
    u64 page = addr;
    int status = -999;
    long r = syscall(SYS_move_pages, 0, 1, &page, NULL, &status, 0);
    if (r == -1) return fail_errno(errno);
    if (status < 0) return fail_errno(-status);
    return ok_value((u64)status);
}

static struct out do_mbind(u64 addr, u64 length, u64 mode, u64 nodemask) {
    if (!(addr & ~PAGE_MASK) && !lock_range_safe(addr, length)) return none();
    u64 mask = nodemask;
    return sysret(syscall(SYS_mbind, addr, length, mode, &mask, 64, 0));
}

/* map_pages: n one-page private anonymous mappings, every other page from addr, each with
   MAP_FIXED_NOREPLACE, stopping at the first mmap that fails: the count mapped, with that mmap's
   errno beside it (memspec/calls.py; model/os/bulk.py).  Staged inside the sandbox window only. */
#define MAP_PAGES_MAX (1ULL << 17)
/* At vm.max_map_count the agent can map nothing more of its own: brk is refused too
   (do_brk_flags asks map_count > sysctl_max_map_count), so a malloc that needs new memory
   fails (found by fuzzing: the agent died of "out of memory" at the next checkpoint).
   mlockall(MCL_FUTURE) under a small RLIMIT_MEMLOCK refuses the growth of the heap as well
   (mlock_future_ok), so a process of the program that locks its future mappings died the same
   way at its next checkpoint.  So when the agent starts (before hello measures its own mappings
   and size: base_maps, base_vm) the heap is grown once by HEAP_RESERVE and kept: mallocs come
   from it and it is never trimmed.  Its pages are left untouched: a fault inside the heap needs
   no new mapping and no lock.  A checkpoint no longer holds /proc/self/maps whole (maps_next,
   SPILL), so nothing the agent keeps grows with the number of mappings: at vm.max_map_count
   with three processes each used under 400 KiB of it.  The most it holds is a wide mincore
   answer (a decimal number of up to 1 MiB of pages: about 1 MiB in all).  The reservation is
   not free: mlockall(MCL_CURRENT) fills every page of it (32 MiB took 17 ms a call). */
#define HEAP_RESERVE (8 << 20)
static void reserve_heap(void) {
    static int done;
    if (done) return;
    done = 1;
    mallopt(M_MMAP_THRESHOLD, HEAP_RESERVE);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    void *volatile p = malloc(HEAP_RESERVE);    /* volatile: the compiler may not elide the pair */
    free(p);
}

static struct out do_map_pages(u64 addr, u64 n, u64 prot) {
    if (n > MAP_PAGES_MAX || (u128)addr + 2 * n * PAGE > ((u128)1 << 64)) return fail_errno(EINVAL);
    if (n && (addr < WINDOW_LO || (u128)addr + 2 * n * PAGE > WINDOW_HI))
        REFUSE("map_pages is staged inside the sandbox window only");
    reserve_heap();
    for (u64 k = 0; k < n; k++) {
        u64 a = addr + 2 * k * PAGE;
        if (syscall(SYS_mmap, a, PAGE, prot, 0x02 | 0x20 | 0x100000, -1, 0) == -1) {
            struct out o = fail_errno(errno);
            o.value = (i64)k;
            o.value_unsigned = 1;
            return o;
        }
        if (K.dontfork.n) rg_remove(&K.dontfork, a, (u128)a + PAGE);
    }
    return ok_value(n);
}

/* ------------------------------------------------------------------------------------ */
/* processes                                                                             */

static void serve(void);

static void add_servant(const char *name, pid_t pid, int fd, int direct) {
    K.sv = realloc(K.sv, sizeof *K.sv * (size_t)(K.nsv + 1));
    struct servant *s = &K.sv[K.nsv++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->pid = pid;
    s->fd = fd;
    s->direct = direct;
}

/* fork a process of the program that serves frames on ``chan`` (closed here); -1 with errno */
static pid_t fork_serving(const char *child, int chan) {
    pid_t pid = fork();     /* no fflush first: stdio writes only standard error, unbuffered */
    if (pid < 0) { int e = errno; close(chan); errno = e; return -1; }
    if (pid == 0) {
        pend_fd = -1;
        pend.n = 0;
        close(K.up_r);
        if (K.up_w != K.up_r) close(K.up_w);
        if (K.out > 2) close(K.out);
        K.out = -1;
        for (int i = 0; i < K.nsv; i++) close(K.sv[i].fd);
        K.nsv = 0;
        K.forked = 0;
        if (K.pagemap >= 0) close(K.pagemap);
        start_process(-1);
        free(K.dontfork.r);
        memset(&K.dontfork, 0, sizeof K.dontfork);      /* those ranges do not exist here */
        snprintf(K.name, sizeof K.name, "%s", child);
        K.up_r = K.up_w = chan;
        K.up_sock = 1;
        serve();
        _exit(0);
    }
    close(chan);
    return pid;
}

/* fork in this process: main makes the socket itself; another process gets it from main */
static struct out do_fork(const char *child, int passed) {
    int sp[2] = {-1, -1};
    if (passed < 0 && strcmp(K.name, "main")) return fail_errno(EINVAL);
    if (passed < 0 && high_socketpair(sp) < 0) return fail_errno(errno);
    /* orphans come to main, which reaps them: main is their subreaper from its first fork (before
       it, it has no descendants to orphan) */
    if (passed < 0 && !K.forked) prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    pid_t pid = fork_serving(child, passed >= 0 ? passed : sp[1]);
    if (pid < 0) {
        int e = errno;
        if (sp[0] >= 0) close(sp[0]);
        return fail_errno(e);
    }
    if (passed < 0) add_servant(child, pid, sp[0], 1);
    K.forked++;
    return ok_value((u64)pid);
}

static struct servant *find_servant(const char *name) {
    for (int i = 0; i < K.nsv; i++) if (!strcmp(K.sv[i].name, name)) return &K.sv[i];
    return NULL;
}

/* children of this process that have exited (not main's: main waits for each by its pid); a
   process that never forked has none (a fetch probe is waited for at once) */
static void reap_children(void) {
    int st;
    if (K.forked)
        while (waitpid(-1, &st, WNOHANG) > 0) {}
}

/* until the process has exited (its socket closed: exit_files, after exit_mm), then reap it if
   it is main's child (forked by main, or an orphan main adopted as the subreaper); the list
   keeps its order (a parent before its children, so that a parent ends first and main adopts
   the children it leaves) */
static void drop_servant(struct servant *s) {
    char tmp[4096];
    int st;
    shutdown(s->fd, SHUT_WR);
    for (;;) {
        ssize_t k = read(s->fd, tmp, sizeof tmp);
        if (k > 0 || (k < 0 && errno == EINTR)) continue;
        break;
    }
    close(s->fd);
    while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR) {}
    size_t i = (size_t)(s - K.sv);
    memmove(s, s + 1, sizeof *s * ((size_t)K.nsv - i - 1));
    K.nsv--;
}

static void describe_death(pid_t pid, char *out, size_t cap) {
    int st = 0;
    pid_t r;
    while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR) {}
    if (r < 0) snprintf(out, cap, "ended (not main's child)");
    else if (WIFSIGNALED(st)) {
        const char *abbrev = sigabbrev_np(WTERMSIG(st));
        if (abbrev) snprintf(out, cap, "killed by SIG%s", abbrev);
        else snprintf(out, cap, "killed by signal %d", WTERMSIG(st));
    }
    else snprintf(out, cap, "exit status %d", WEXITSTATUS(st));
}

/* ------------------------------------------------------------------------------------ */
/* one request in this process                                                           */

static void reply_text(struct buf *b, const struct req *m, const struct out *o) {
    bstr(b, "{\"type\":\"reply\",\"id\":");
    bi64(b, m->id);
    if (refusal[0]) {
        bstr(b, ",\"value\":null,\"refused\":");
        bjson_str(b, refusal);
        bstr(b, "}");
        return;
    }
    if (o->bignum) { bstr(b, ",\"value\":"); bstr(b, o->bignum); }     /* bfmt holds 512 bytes */
    else if (o->has_value) {
        if (o->value == -1 && o->err) bstr(b, ",\"value\":-1");
        else { bstr(b, ",\"value\":"); bu64(b, (u64)o->value); }
    } else bstr(b, ",\"value\":null");
    if (o->err) { bstr(b, ",\"errno\":\""); bstr(b, o->err); bstr(b, "\""); }
    if (o->sig) { bstr(b, ",\"signal\":\""); bstr(b, o->sig); bstr(b, "\""); }
    if (o->has_after_fetch) bfmt(b, ",\"detail\":{\"after_fetch\":%d}", o->after_fetch);
    bstr(b, "}");
}

#define A(i) (m->args[i].num)
#define NEED(n) do { if (m->nargs != (n)) { snprintf(bad, sizeof bad, "%s takes %d arguments, got %d", m->name, (n), m->nargs); goto malformed; } } while (0)

/* run a call of this process; returns 0, or -1 with a message in bad (an error reply) */
static int run_call(const struct req *m, struct buf *b) {
    static char bad[200];
    struct out o = none();
    const char *n = m->name;
    refusal[0] = 0;
    for (int i = 0; i < m->nargs; i++) {
        int want_str = (!strcmp(n, "shm_open") || !strcmp(n, "shm_unlink") || !strcmp(n, "memfd_create")) && i == 0;
        if (m->args[i].is_str != want_str) { snprintf(bad, sizeof bad, "argument %d of %s has the wrong kind", i + 1, n); goto malformed; }
    }
    if (!strcmp(n, "mmap")) { NEED(6); o = do_mmap(A(0), A(1), A(2), A(3), A(4), A(5)); }
    else if (!strcmp(n, "munmap")) { NEED(2); o = do_munmap(A(0), A(1)); }
    else if (!strcmp(n, "mprotect")) { NEED(3); o = do_mprotect(A(0), A(1), A(2)); }
    else if (!strcmp(n, "load")) { NEED(1); o = do_load(A(0)); }
    else if (!strcmp(n, "store")) { NEED(2); o = do_store(A(0), A(1)); }
    else if (!strcmp(n, "fetch")) { NEED(1); o = do_fetch(A(0)); }
    else if (!strcmp(n, "fork")) { NEED(0); o = do_fork(m->has_result ? m->result : "p?", g_passed); g_passed = -1; }
    else if (!strcmp(n, "mremap")) { NEED(5); o = do_mremap(A(0), A(1), A(2), A(3), A(4)); }
    else if (!strcmp(n, "madvise")) { NEED(3); o = do_madvise(A(0), A(1), A(2)); }
    else if (!strcmp(n, "msync")) { NEED(3); o = do_msync(A(0), A(1), A(2)); }
    else if (!strcmp(n, "mseal")) { NEED(3); o = do_mseal(A(0), A(1), A(2)); }
    else if (!strcmp(n, "mincore")) {
        NEED(2);
#ifdef AGENT_BUG_GARBAGE_ON_MINCORE
        bstr(b, "mincore? not today");
        return 0;
#endif
        o = do_mincore(A(0), A(1));
    }
    else if (!strcmp(n, "mlock")) { NEED(2); o = do_mlock(A(0), A(1)); }
    else if (!strcmp(n, "mlock2")) { NEED(3); o = do_mlock2(A(0), A(1), A(2)); }
    else if (!strcmp(n, "munlock")) { NEED(2); o = do_munlock(A(0), A(1)); }
    else if (!strcmp(n, "mlockall")) { NEED(1); o = sysret(syscall(SYS_mlockall, A(0))); }
    else if (!strcmp(n, "munlockall")) { NEED(0); o = sysret(syscall(SYS_munlockall)); }
    else if (!strcmp(n, "set_memlock_limit")) { NEED(1); o = do_set_memlock_limit(A(0)); }
    else if (!strcmp(n, "set_fsize_limit")) { NEED(1); o = do_set_fsize_limit(A(0)); }
    else if (!strcmp(n, "drop_privileges")) { NEED(0); o = do_drop_privileges(); }
    else if (!strcmp(n, "shm_open")) { NEED(3); o = do_shm_open(m->strs[0], A(1), A(2)); }
    else if (!strcmp(n, "shm_unlink")) { NEED(1); o = do_shm_unlink(m->strs[0]); }
    else if (!strcmp(n, "memfd_create")) { NEED(2); o = do_memfd_create(m->strs[0], A(1)); }
    else if (!strcmp(n, "open_file")) { NEED(2); o = do_open_file(A(0), A(1)); }
    else if (!strcmp(n, "pipe")) { NEED(0); o = do_pipe(); }
    else if (!strcmp(n, "ftruncate")) { NEED(2); o = do_ftruncate(A(0), A(1)); }
    else if (!strcmp(n, "close")) { NEED(1); o = do_close(A(0)); }
    else if (!strcmp(n, "read")) { NEED(1); o = do_read_one(A(0), 0, 0); }
    else if (!strcmp(n, "pread")) { NEED(2); o = do_read_one(A(0), 1, A(1)); }
    else if (!strcmp(n, "write")) { NEED(3); o = do_write_n(A(0), 0, 0, A(1), A(2)); }
    else if (!strcmp(n, "pwrite")) { NEED(4); o = do_write_n(A(0), 1, A(1), A(2), A(3)); }
    else if (!strcmp(n, "lseek")) { NEED(3); o = do_lseek(A(0), A(1), A(2)); }
    else if (!strcmp(n, "pfn_of")) { NEED(1); o = do_pfn_of(A(0)); }
    else if (!strcmp(n, "thp_mapped")) { NEED(1); o = do_thp_mapped(A(0)); }
    else if (!strcmp(n, "minflt") || !strcmp(n, "majflt")) {
        long f[2];
        NEED(0);
        faults(f);
        o = ok_value((u64)f[n[1] == 'i' ? 0 : 1]);
    }
    else if (!strcmp(n, "get_node")) { NEED(1); o = do_get_node(A(0)); }
    else if (!strcmp(n, "mbind")) { NEED(4); o = do_mbind(A(0), A(1), A(2), A(3)); }
    else if (!strcmp(n, "map_pages")) { NEED(3); o = do_map_pages(A(0), A(1), A(2)); }
    else { snprintf(bad, sizeof bad, "the agent does not implement %s", n); goto malformed; }
    reply_text(b, m, &o);
    free(o.bignum);
    return 0;
malformed:
    bfmt(b, "{\"type\":\"error\",\"id\":%" PRId64 ",\"message\":", m->id);
    bjson_str(b, bad);
    bstr(b, "}");
    return -1;
}

/* A checkpoint's JSON is made a mapping at a time and, once SPILL bytes long, sent on (spill):
   main writes it to the harness as it goes, another process sends it to main in frames.  A process
   at vm.max_map_count thus needs no more memory for it than for a short one. */
#define SPILL (1 << 16)
typedef void (*spill_fn)(struct buf *b);

/* main: what the state reply holds so far goes to the harness now (nothing of main's is waiting
   before it: an observe writes out the answers gathered before it) */
static void spill_out(struct buf *b) {
    write_all(K.out, b->p, b->n);
    b->n = 0;
}

/* another process: the checkpoint so far as a frame tagged '+' (more follows; the last is '.') */
static void spill_up(struct buf *b) {
    b->p[0] = '+';
    send_frame(K.up_w, b->p, b->n);
    b->n = 0;
    bput(b, ".", 1);
}

static void maps_json(struct buf *b, spill_fn spill) {
    struct maps_walk w;
    struct map m;
    long f[2];
    int first = 1;
    bstr(b, "{\"maps\":[");
    maps_begin(&w);
    while (maps_next(&w, &m)) {
        bput(b, first ? "[" : ",[", first ? 1 : 2);
        first = 0;
        bu64(b, m.s);
        bput(b, ",", 1);
        bu64(b, m.e);
        bput(b, ",\"", 2);
        bput(b, m.perms, 4);
        bput(b, "\"]", 2);
        if (b->n >= SPILL) spill(b);
    }
    maps_end(&w);
    faults(f);
    bput(b, "],\"faults\":[", 12);
    bi64(b, f[0]);
    bput(b, ",", 1);
    bi64(b, f[1]);
    bput(b, "]}", 2);
}

/* What the program's calls may have left behind when it ends, as main sees every process's
   requests go by: names in /dev/shm (shm_open; open_file's directory too, where $TMPDIR is there)
   and open_file's directory.  Main's exit status says so to the supervisor (MAIN_MADE), which then
   empties its private /dev/shm; a program that made neither leaves nothing to look for. */
enum { MADE_SHM = 1, MADE_FILES = 2 };
#define MAIN_MADE 3
static int g_made;

static void note_made(const struct req *m) {
    if (strcmp(m->type, "call")) return;
    if (!strcmp(m->name, "shm_open")) g_made |= MADE_SHM;
    else if (!strcmp(m->name, "open_file")) g_made |= MADE_FILES | MADE_SHM;
}

static void cleanup(void) {
    if (!K.shm_private && (g_made & MADE_SHM)) {
        /* this run's shared memory names, made by any of its processes */
        char path[600];
        int dfd = open("/dev/shm", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            char dbuf[8192];
            long k;
            size_t plen = strlen(K.shm_prefix);
            while ((k = syscall(SYS_getdents64, dfd, dbuf, sizeof dbuf)) > 0) {
                for (long off = 0; off < k;) {
                    unsigned short reclen = *(unsigned short *)(dbuf + off + 16);
                    const char *name = dbuf + off + 19;
                    if (!strncmp(name, K.shm_prefix, plen)) { snprintf(path, sizeof path, "/%s", name); shm_unlink(path); }
                    off += reclen;
                }
            }
            close(dfd);
        }
    }
    struct stat st;
    if ((g_made & MADE_FILES) && stat(K.tmpdir, &st) == 0) {
        int dfd = open(K.tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            char dbuf[8192];
            long k;
            while ((k = syscall(SYS_getdents64, dfd, dbuf, sizeof dbuf)) > 0)
                for (long off = 0; off < k;) {
                    unsigned short reclen = *(unsigned short *)(dbuf + off + 16);
                    const char *name = dbuf + off + 19;
                    if (strcmp(name, ".") && strcmp(name, "..")) unlinkat(dfd, name, 0);
                    off += reclen;
                }
            close(dfd);
        }
        rmdir(K.tmpdir);
    }
}

/* ------------------------------------------------------------------------------------ */
/* pipelined programs: the named results the supervisor has seen, and the calls it rewrites */

struct binding { char name[64]; u64 value; int used; };
static struct binding *env_tab;
static size_t env_cap, env_n;

static size_t env_slot(const char *name) {
    size_t h = 1469598103934665603ULL;
    for (const char *c = name; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    size_t i = h & (env_cap - 1);
    while (env_tab[i].used && strcmp(env_tab[i].name, name)) i = (i + 1) & (env_cap - 1);
    return i;
}

static void env_bind(const char *name, u64 value) {
    if (env_n * 2 >= env_cap) {
        struct binding *old = env_tab;
        size_t n = env_cap;
        env_cap = env_cap ? env_cap * 2 : 64;
        env_tab = calloc(env_cap, sizeof *env_tab);
        if (!env_tab) die("out of memory");
        env_n = 0;
        for (size_t i = 0; i < n; i++) if (old[i].used) env_bind(old[i].name, old[i].value);
        free(old);
    }
    size_t i = env_slot(name);
    if (!env_tab[i].used) { env_n++; env_tab[i].used = 1; snprintf(env_tab[i].name, sizeof env_tab[i].name, "%s", name); }
    env_tab[i].value = value;
}

static int env_get(const char *name, u64 *value) {
    if (!env_cap) return 0;
    size_t i = env_slot(name);
    if (!env_tab[i].used) return 0;
    *value = env_tab[i].value;
    return 1;
}

/* what a reply binds to the call's name: its value, or -1 when it has none (a failed call's
   errno or a signal), as program.bind_result does; numbers wrap modulo 2^64 as arguments do */
static u64 reply_binding(const struct buf *b) {
    const char *v = strstr(b->p, "\"value\":");
    if (!v || v[8] == 'n') return (u64)-1;
    struct rd r = {v + 8, NULL};
    if (*r.p == '"') return (u64)-1;
    u64 x = num(&r);
    return r.err ? (u64)-1 : x;
}

#define REPLY_HEAD "{\"type\":\"reply\""

/* the call's references resolved; NULL, or the error when a name is unbound */
static const char *resolve_refs(struct req *m) {
    for (int i = 0; i < m->nargs; i++) {
        struct arg *a = &m->args[i];
        if (!a->is_ref) continue;
        u64 v;
        if (!env_get(a->ref, &v)) return "a reference to a name no earlier call bound";
        a->num = v + a->num;
        a->is_ref = 0;
    }
    return NULL;
}

/* a call with its references resolved as a plain call line (what main relays to another process) */
static void call_line(const struct req *m, struct buf *out) {
    out->n = 0;
    bstr(out, "{\"type\":\"call\",\"id\":");
    bi64(out, m->id);
    bstr(out, ",\"proc\":");
    bjson_str(out, m->proc[0] ? m->proc : "main");
    bstr(out, ",\"name\":");
    bjson_str(out, m->name);
    bstr(out, ",\"args\":[");
    for (int i = 0; i < m->nargs; i++) {
        if (i) bstr(out, ",");
        if (m->args[i].is_str) bjson_str(out, m->strs[i]);
        else bu64(out, m->args[i].num);
    }
    bstr(out, "]");
    if (m->has_result) { bstr(out, ",\"result\":"); bjson_str(out, m->result); }
    bstr(out, "}");
}

/* the value of a reply frame ("value":N), or -1 */
static long long reply_value(const struct buf *b) {
    const char *v = strstr(b->p, "\"value\":");
    return v ? strtoll(v + 8, NULL, 10) : -1;
}

/* main: relay a request to a process of the program and its reply back (a fork: with the
   socket the new process will serve on; an exit: waiting for the process to be gone) */
static void relay(struct servant *s, const struct req *m, const struct buf *in, struct buf *out) {
    int sp[2] = {-1, -1};
    int fork = !strcmp(m->name, "fork");
    if (fork && high_socketpair(sp) < 0) {
        bfmt(out, "{\"type\":\"reply\",\"id\":%" PRId64 ",\"value\":-1,\"errno\":\"%s\"}", m->id, errno_name(errno, errtmp));
        return;
    }
    int sent = fork ? send_frame_fd(s->fd, in->p, in->n, sp[1]) : send_frame(s->fd, in->p, in->n);
    if (sp[1] >= 0) close(sp[1]);
    if (sent < 0 || recv_frame(s->fd, out) < 0) {
        char how[100];
        if (pend_fd >= 0) flush_pend();        /* the answers before this call's, then the death */
        describe_death(s->pid, how, sizeof how);
        fprintf(stderr, "memspec-agent: process %s died: %s\n", s->name, how);
        _exit(71);
    }
    if (fork) {
        long long pid = reply_value(out);
        if (pid > 0 && !strstr(out->p, "\"refused\"")) add_servant(m->has_result ? m->result : "p?", (pid_t)pid, sp[0], 0);
        else close(sp[0]);
    }
    if (!strcmp(m->name, "exit")) drop_servant(s);
}

/* Calls that never fill the program's memory, make or wait for a process, or block: besides
   munmap, mprotect, load and mmap without MAP_POPULATE/MAP_LOCKED, the descriptor and limit calls
   and the queries.  (store, pwrite and write fill a page; msync waits for writeback; mlock* and
   mbind fill or move memory; fork, exit and fetch are processes.) */
static const char *const QUIET_CALLS[] = {
    "munmap", "mprotect", "load", "mincore", "mseal", "mremap", "ftruncate", "lseek", "close", "read", "pread",
    "shm_open", "shm_unlink", "memfd_create", "pipe", "open_file", "set_memlock_limit", "set_fsize_limit",
    "drop_privileges", "minflt", "majflt", "pfn_of", "thp_mapped", "get_node",
};

/* madvise advice that neither fills memory (MADV_WILLNEED, MADV_POPULATE_*, MADV_COLLAPSE) nor
   takes frames out of the machine (MADV_HWPOISON, MADV_SOFT_OFFLINE): NORMAL, RANDOM, SEQUENTIAL,
   DONTNEED, FREE, REMOVE, DONTFORK, DOFORK, HUGEPAGE, NOHUGEPAGE, DONTDUMP, DODUMP, WIPEONFORK,
   KEEPONFORK, COLD */
static int quiet_advice(u64 a) { return a <= 20 && a != 3 && a != 5 && a != 6 && a != 7 && a != 12 && a != 13; }

/* A call whose answer may wait in main's block of answers: one that neither waits for another
   process nor makes one, nor fills memory (an allocation the kernel answers with SIGKILL would end
   main with the answers before it unsent), nor blocks; or a call skipped after a refusal.  A call
   main relays to another process of the program is judged the same way: main itself only waits
   for the answer, and writes out the answers before it when that process dies instead (relay). */
static int quiet_call(const struct req *m, int stopped) {
    static int locking;     /* the program locks memory: mprotect, mmap and mremap may fill locked ranges */
    if (strcmp(m->type, "call")) return 0;
    if (stopped && m->batch) return 1;
    const char *n = m->name;
    if (!strncmp(n, "mlock", 5) || (!strcmp(n, "mmap") && m->nargs == 6 &&
                                     (m->args[3].is_ref || m->args[3].is_str || (m->args[3].num & MAP_LOCKED))))
        locking = 1;
    if (locking) return !strcmp(n, "munmap") || !strcmp(n, "load");
    if (!strcmp(n, "mmap"))
        return m->nargs == 6 && !m->args[3].is_ref && !m->args[3].is_str && !(m->args[3].num & (MAP_POPULATE | MAP_LOCKED));
    if (!strcmp(n, "madvise"))
        return m->nargs == 3 && !m->args[2].is_ref && !m->args[2].is_str && quiet_advice(m->args[2].num);
    for (unsigned i = 0; i < sizeof QUIET_CALLS / sizeof QUIET_CALLS[0]; i++)
        if (!strcmp(n, QUIET_CALLS[i])) return 1;
    return 0;
}

/* main: the state reply to an observe, every process's mappings and fault counts, into out
   (spilled to the harness as it grows: spill_out) */
static void observe_state(const struct req *m, struct buf *out, struct buf *sub) {
    bstr(out, "{\"type\":\"state\",\"id\":");
    bi64(out, m->id);
    bstr(out, ",\"procs\":{\"");
    bstr(out, K.name);
    bstr(out, "\":");
    maps_json(out, spill_out);
    for (int i = 0; i < K.nsv; i++) {
        bstr(out, ",\"");
        bstr(out, K.sv[i].name);
        bstr(out, "\":");
        int ok = send_frame(K.sv[i].fd, "O", 1) == 0;
        for (int more = ok; more;) {     /* its frames: '+' more follows, '.' the last */
            int passed;
            if (recv_frame_fd(K.sv[i].fd, sub, &passed, 0, 1) < 0 || sub->n < 1) { ok = 0; break; }
            bput(out, sub->p + 1, sub->n - 1);
            if (out->n >= SPILL) spill_out(out);
            more = sub->p[0] == '+';
        }
        if (!ok) {
            char how[100];
            describe_death(K.sv[i].pid, how, sizeof how);
            fprintf(stderr, "memspec-agent: process %s died: %s\n", K.sv[i].name, how);
            _exit(71);
        }
    }
    bstr(out, "}}");
}

/* A process of the program: frames in (a request line, "O" observe-own, "E" end, "S" sync),
   answers out.  Main answers the harness itself, a line each on its pipe (K.out), and routes
   every other process's requests to it; the others answer main in frames, and only for
   themselves.  "S" (main only): every answer owed is written; main says so with a frame "S"
   to the supervisor, which then answers a request of its own. */
static void serve(void) {
    struct buf in = {0}, out = {0}, sub = {0}, call = {0};
    struct frd up = {K.up_r, NULL, 0, 0, 0};     /* main: the supervisor's pipe, read in blocks */
    if (!K.up_sock && g_blocks) pend_fd = K.out;
    int stopped = 0;        /* main: a call of a pipelined program was refused; the rest are skipped */
    struct req *m = malloc(sizeof *m);
    int is_main = !strcmp(K.name, "main");
    for (;;) {
        int passed = -1;
        if (!is_main) reap_children();
        if ((K.up_sock ? recv_frame_fd(K.up_r, &in, &passed, 1, 0) : frd_next(&up, &in)) < 0) break;
        out.n = 0;
        bput(&out, "", 0);
        if (in.n == 1 && in.p[0] == 'E') break;
        if (in.n == 1 && in.p[0] == 'O') {
            bput(&out, ".", 1);
            maps_json(&out, spill_up);
            send_frame(K.up_w, out.p, out.n);
            continue;
        }
        if (in.n == 1 && in.p[0] == 'S') {
            if (pend_fd >= 0) flush_pend();
            if (send_frame(K.up_w, "S", 1) < 0) break;
            continue;
        }
        const char *err = parse_req(in.p, m);
        g_passed = -1;
        if (is_main && !err) note_made(m);
        if (pend.n && (err || !quiet_call(m, stopped))) flush_pend();
        if (err) {
            bstr(&out, "{\"type\":\"error\",\"id\":null,\"message\":");
            bjson_str(&out, err);
            bstr(&out, "}");
        } else if (!strcmp(m->type, "observe")) {
            observe_state(m, &out, &sub);
        } else if (is_main && !strcmp(m->type, "call") && m->batch && stopped) {
            /* a pipelined program whose earlier call was refused: not run */
            bstr(&out, "{\"type\":\"reply\",\"id\":");
            bi64(&out, m->id);
            bstr(&out, ",\"value\":null,\"skipped\":true}");
        } else if (is_main && !strcmp(m->type, "call") && (err = resolve_refs(m)) != NULL) {
            bfmt(&out, "{\"type\":\"error\",\"id\":%" PRId64 ",\"message\":", m->id);
            bjson_str(&out, err);
            bstr(&out, "}");
            stopped = m->batch;
        } else if (!is_main || strcmp(m->proc[0] ? m->proc : "main", "main") == 0) {
            if (!strcmp(m->name, "exit")) {
                if (is_main) {
                    bfmt(&out, "{\"type\":\"error\",\"id\":%" PRId64 ",\"message\":\"exit is only for a forked process\"}", m->id);
                } else {
                    bfmt(&out, "{\"type\":\"reply\",\"id\":%" PRId64 ",\"value\":null}", m->id);
                    send_frame(K.up_w, out.p, out.n);
                    _exit(0);
                }
            } else {
                g_passed = passed;
                passed = -1;
                run_call(m, &out);
                if (g_passed >= 0) close(g_passed);
                g_passed = -1;
            }
        } else {
            struct servant *s = find_servant(m->proc);
            if (!s) bfmt(&out, "{\"type\":\"reply\",\"id\":%" PRId64 ",\"value\":-1,\"errno\":\"ESRCH\"}", m->id);
            else {
                call_line(m, &call);
                relay(s, m, &call, &out);
            }
        }
        if (is_main && !err && !strcmp(m->type, "call")) {
            /* what the call binds, for the references of the calls after it; a refusal or an
               error stops a pipelined program */
            if (strncmp(out.p, REPLY_HEAD, sizeof REPLY_HEAD - 1) || strstr(out.p, "\"refused\":"))
                stopped = stopped || m->batch;
            else if (m->has_result && strcmp(m->name, "fork"))
                env_bind(m->result, reply_binding(&out));
        }
        if (passed >= 0) close(passed);
        if (!is_main) {
            if (send_frame(K.up_w, out.p, out.n) < 0) break;
        } else if (pend_fd < 0) {
            bput(&out, "\n", 1);
            if (write_all(K.out, out.p, out.n) < 0) break;
        } else {
            bput(&pend, out.p, out.n);
            bput(&pend, "\n", 1);
            if (!frd_whole(&up) || pend.n > PEND_MAX) flush_pend();
        }
    }
    if (pend_fd >= 0) flush_pend();
    /* the end of the program: end its processes (in the order they were forked) */
    while (K.nsv) drop_servant(&K.sv[0]);
    if (is_main) cleanup();
    reap_children();
    _exit(is_main && g_made ? MAIN_MADE : 0);
}

/* ------------------------------------------------------------------------------------ */
/* the supervisor: one process per program                                               */

static pid_t main_pid;
static int main_w = -1, main_r = -1;   /* one socket to main: frames to it, and its end */
static struct buf to_main;         /* frames for main, written at once when no whole request waits */
static struct frd from_main = {-1, NULL, 0, 0, 0};     /* main's frames: only "S", and the end at its exit */
static int main_owes;              /* requests went to main since it last said it had answered all */
/* the harness's pipes, moved above the program's descriptors once: requests in, answers out (main
   writes its own).  The supervisor's standard input and output are /dev/null from then on, which
   each main finds there as its own without a dup2 a program. */
static int g_in = -1, g_out = -1;

/* s appended to the string at dst (n bytes so far, room for cap - 1), cut where it does not fit */
static void cat(char *dst, size_t *n, size_t cap, const char *s, size_t len) {
    if (len > cap - 1 - *n) len = cap - 1 - *n;
    memcpy(dst + *n, s, len);
    *n += len;
    dst[*n] = 0;
}

/* K.tmpdir, "$TMPDIR/memspec-PID-RANDOM" (without printf: main's start runs no more of the C
   library's code than it needs, each code page the first time costing a fault in every main) */
static void tmpdir_name(int pid, const unsigned char rnd[6]) {
    static const char hex[] = "0123456789abcdef";
    char num[16], *e = num + sizeof num, *q = e, h[12];
    size_t n = 0, cap = sizeof K.tmpdir;
    const char *base = g_tmp && *g_tmp ? g_tmp : "/tmp";
    unsigned v = (unsigned)pid;
    do { *--q = (char)('0' + v % 10); v /= 10; } while (v);
    for (int i = 0; i < 6; i++) { h[2 * i] = hex[rnd[i] >> 4]; h[2 * i + 1] = hex[rnd[i] & 15]; }
    cat(K.tmpdir, &n, cap, base, strlen(base));
    cat(K.tmpdir, &n, cap, "/memspec-", 9);
    cat(K.tmpdir, &n, cap, q, (size_t)(e - q));
    cat(K.tmpdir, &n, cap, "-", 1);
    cat(K.tmpdir, &n, cap, h, sizeof h);
}

/* the program's main process, just forked: its descriptors, its state, then it serves */
static void start_main(int req_r, int rep_w) {
    int pid = (int)getpid();
    struct timespec ts = {0, 0};
    unsigned char rnd[6] = {0};
    close(g_in);
    memset(&K, 0, sizeof K);
    memcpy(K.name, "main", 5);
    K.up_r = req_r;
    K.up_w = rep_w;
    K.out = g_out;
    rg_add(&K.owned, WINDOW_LO, WINDOW_HI);
    K.shm_private = g_shm_private_wanted && (g_shm_ns || private_dev_shm());
    if (g_shm_private_wanted && !K.shm_private) {
        fprintf(stderr, "memspec-agent: a private /dev/shm was probed to work but cannot be made now\n");
        _exit(72);
    }
    if (!K.shm_private) {       /* names in the shared /dev/shm carry a prefix of this run's own */
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(K.shm_prefix, sizeof K.shm_prefix, "ms%dx%ld-", pid,
                 (long)((ts.tv_sec * 1000 + ts.tv_nsec / 1000000) % 100000));
    }
    if (syscall(SYS_getrandom, rnd, sizeof rnd, 0) != (long)sizeof rnd) {
        clock_gettime(CLOCK_REALTIME, &ts);
        for (int i = 0; i < 6; i++) rnd[i] = (unsigned char)(ts.tv_nsec >> (5 * i));
    }
    tmpdir_name(pid, rnd);
    start_process(g_cap_sys_admin);
    serve();
}

/* main's channel is one socket pair (a pipe each way made four descriptors to move above the
   program's, each move two system calls): frames to main one way, "S" and main's end the other */
static void start_program(void) {
    int sp[2];
    if (g_shm_private_wanted && !g_shm_ns) g_shm_ns = private_dev_shm();
    if (high_socketpair(sp) < 0) die("socketpair");
    main_pid = fork();      /* no fflush first: stdio writes only standard error, unbuffered */
    if (main_pid < 0) die("fork");
    if (main_pid == 0) {
        close(sp[0]);
        start_main(sp[1], sp[1]);
    }
    close(sp[1]);
    main_w = main_r = sp[0];
    from_main.fd = main_r;
    from_main.start = from_main.have = 0;
    main_owes = 0;
}

/* the frames for main go out; -1 when main is gone */
static int flush_main(void) {
    if (!to_main.n) return 0;
    int r = write_all(main_w, to_main.p, to_main.n);
    to_main.n = 0;
    return r;
}

/* every answer main owes is written (main says "S"); -1 when main is gone */
static int sync_main(void) {
    struct buf ack = {0};
    if (!main_pid || !main_owes) return 0;
    bframe(&to_main, "S", 1);
    int r = flush_main() < 0 || frd_next(&from_main, &ack) < 0 ? -1 : 0;
    free(ack.p);
    if (!r) main_owes = 0;
    return r;
}

/* main answers what it was sent, ends the program's processes and exits */
static void end_program(void) {
    if (!main_pid) return;
    int st = -1;
    flush_main();
    send_frame(main_w, "E", 1);
    close(main_w);
    while (waitpid(main_pid, &st, 0) < 0 && errno == EINTR) {}
    main_pid = 0;
    /* main exits 0 when its program made nothing /dev/shm could hold (cleanup) */
    if (g_shm_ns && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) clear_dev_shm();
}

/* ------------------------------------------------------------------------------------ */
/* facts probed inside the agent's own process                                           */

static int in_child(int (*probe)(void), int failed) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return failed;
    if (pid == 0) _exit(probe());
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(st) ? WEXITSTATUS(st) : failed;
}

/* 0: a PROT_EXEC-only page is readable; 1: a load from it faults (execute-only); 2: unknown */
static int probe_exec_only(void) {
    long a = syscall(SYS_mmap, 0, PAGE, PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char v;
    if (a == -1) return 2;
    install_handler();
    return probe_access((u64)a, 0, 0, &v) ? 1 : 0;
}

/* 0 when the page below probe_top can be mapped where asked (MAP_FIXED_NOREPLACE) */
static u64 probe_top;
static int probe_mappable(void) {
    long a = syscall(SYS_mmap, probe_top - PAGE, PAGE, 0, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    return a == (long)(probe_top - PAGE) ? 0 : 1;
}

static int probe_shm_private(void) {
    if (!private_dev_shm()) return 1;
    int fd = shm_open("/memspec-probe", O_CREAT | O_EXCL | O_RDWR, 0600);
    return fd >= 0 ? 0 : 1;
}

/* the calls whose system call is missing (ENOSYS): a call that fails before doing anything */
struct sysprobe { const char *call; long nr; long a[6]; };
static const struct sysprobe SYSPROBES[] = {
    {"mremap", SYS_mremap, {0, 0, 0, -1, 0, 0}},
    {"madvise", SYS_madvise, {1, 0, 0, 0, 0, 0}},
    {"msync", SYS_msync, {1, 0, 0, 0, 0, 0}},
    {"mincore", SYS_mincore, {1, 0, 0, 0, 0, 0}},
    {"mlock", SYS_mlock, {0, 0, 0, 0, 0, 0}},
    {"mlock2", SYS_mlock2, {0, 0, -1, 0, 0, 0}},
    {"munlock", SYS_munlock, {0, 0, 0, 0, 0, 0}},
    {"mlockall", SYS_mlockall, {0, 0, 0, 0, 0, 0}},
    {"munlockall", SYS_munlockall, {0, 0, 0, 0, 0, 0}},
    {"memfd_create", SYS_memfd_create, {0, -1, 0, 0, 0, 0}},
    {"mbind", SYS_mbind, {0, 0, -1, 0, 0, 0}},
    {"get_node", SYS_move_pages, {0, 0, 0, 0, 0, 0}},
    {"ftruncate", SYS_ftruncate, {-1, 0, 0, 0, 0, 0}},
    {"mseal", 462, {0, 0, -1, 0, 0, 0}},          /* x86-64 __NR_mseal (Linux 6.10; QEMU 7.2: ENOSYS) */
};
static long probe_nr[6];
static int probe_sys(void) {
    long r = syscall(probe_nr[0], probe_nr[1], probe_nr[2], probe_nr[3], probe_nr[4], probe_nr[5], 0);
    return r == -1 && errno == ENOSYS ? 1 : 0;
}

static const char *const CALLS[] = {
    "mmap", "munmap", "mprotect", "load", "store", "fetch", "fork", "exit", "mremap", "madvise", "mseal", "msync",
    "mincore", "mlock", "mlock2", "munlock", "mlockall", "munlockall", "set_memlock_limit", "set_fsize_limit", "drop_privileges",
    "shm_open", "shm_unlink", "memfd_create", "open_file", "pipe", "ftruncate", "close", "read", "write",
    "pread", "pwrite", "lseek", "pfn_of",
    "thp_mapped", "minflt", "majflt", "get_node", "mbind", "map_pages",
};

static long rlim(int which) {
    struct rlimit rl;
    getrlimit(which, &rl);
    return rl.rlim_cur == RLIM_INFINITY ? -1 : (long)rl.rlim_cur;
}

static long read_long(const char *path, long dflt) {
    char t[64] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return dflt;
    ssize_t k = read(fd, t, sizeof t - 1);
    close(fd);
    return k > 0 ? strtol(t, NULL, 10) : dflt;
}

/* the mappings of a fresh program process: its count and size */
static int probe_base_pipe[2];
static int probe_base(void) {
    struct maps_walk w;
    struct map m;
    u64 n = 0, vm = 0;
    maps_begin(&w);
    for (; maps_next(&w, &m); n++) if (m.s < (1ULL << 63)) vm += m.e - m.s;
    maps_end(&w);
    u64 out[2] = {n, vm};
    return write_all(probe_base_pipe[1], out, sizeof out) == 0 ? 0 : 1;
}

static void hello(struct buf *b) {
    struct utsname u;
    struct rlimit ml;
    char errname[32];
    uname(&u);
    int x = in_child(probe_exec_only, 2);
    /* the top of the address space: the last page below 2^56 (5-level paging) or 2^47 that maps
       where asked; below that (an emulator's smaller space), the highest such page, by bisection */
    u64 task_size;
    probe_top = (1ULL << 56) - PAGE;
    if (in_child(probe_mappable, 1) == 0) task_size = (1ULL << 56) - PAGE;
    else {
        probe_top = (1ULL << 47) - PAGE;
        if (in_child(probe_mappable, 1) == 0) task_size = (1ULL << 47) - PAGE;
        else {
            u64 lo = 1ULL << 20, hi = (1ULL << 47) >> 12;     /* pages: lo maps, hi does not */
            while (hi - lo > 1) {
                u64 mid = lo + (hi - lo) / 2;
                probe_top = (mid + 1) << 12;
                if (in_child(probe_mappable, 1) == 0) lo = mid; else hi = mid;
            }
            task_size = (lo + 1) << 12;
        }
    }
    g_shm_private_wanted = in_child(probe_shm_private, 1) == 0;
    u64 base[2] = {0, 0};
    if (pipe(probe_base_pipe) == 0) {
        if (in_child(probe_base, 1) == 0 && read_all(probe_base_pipe[0], base, sizeof base) < 0) base[0] = 0;
        close(probe_base_pipe[0]);
        close(probe_base_pipe[1]);
    }
    mode_t um = umask(0);
    umask(um);
    getrlimit(RLIMIT_MEMLOCK, &ml);

    bstr(b, "{\"type\":\"hello\",\"protocol\":1,\"name\":\"memspec-agent\",\"pipeline\":true,\"layers\":[\"os\"],\"calls\":[");
    struct buf missing = {0};
    bput(&missing, "", 0);
    int first = 1;
    for (unsigned i = 0; i < sizeof CALLS / sizeof CALLS[0]; i++) {
        int absent = 0;
        for (unsigned j = 0; j < sizeof SYSPROBES / sizeof SYSPROBES[0]; j++)
            if (!strcmp(SYSPROBES[j].call, CALLS[i])) {
                probe_nr[0] = SYSPROBES[j].nr;
                for (int k = 0; k < 5; k++) probe_nr[k + 1] = SYSPROBES[j].a[k];
                absent = in_child(probe_sys, 0) == 1;
            }
        if (absent) { bfmt(&missing, "%s\"%s: %s\"", missing.n ? "," : "", CALLS[i], errno_name(ENOSYS, errname)); continue; }
        bfmt(b, "%s\"%s\"", first ? "" : ",", CALLS[i]);
        first = 0;
    }
    bstr(b, "],\"unsupported\":[");
    bput(b, missing.p, missing.n);
    free(missing.p);
    bstr(b, "],\"facts\":{");
    if (x == 0 || x == 1) bfmt(b, "\"exec_only\":%s,", x ? "true" : "false");
    bfmt(b, "\"task_size\":%" PRIu64 ",", task_size);
    bfmt(b, "\"page_size\":%lu,", getauxval(AT_PAGESZ) ? getauxval(AT_PAGESZ) : (unsigned long)sysconf(_SC_PAGESIZE));
    bfmt(b, "\"mmap_min_addr\":%ld,", read_long("/proc/sys/vm/mmap_min_addr", 4096));
    bfmt(b, "\"max_map_count\":%ld,", read_long("/proc/sys/vm/max_map_count", 65530));
    if (base[0]) bfmt(b, "\"base_maps\":%" PRIu64 ",\"base_vm\":%" PRIu64 ",", base[0], base[1]);
    bfmt(b, "\"umask\":%u,", (unsigned)um);
    bstr(b, "\"kernel\":");
    bjson_str(b, u.release);
    bfmt(b, ",\"memlock_soft\":%lld,\"memlock_hard\":%lld,", ml.rlim_cur == RLIM_INFINITY ? -1LL : (long long)ml.rlim_cur,
         ml.rlim_max == RLIM_INFINITY ? -1LL : (long long)ml.rlim_max);
    bfmt(b, "\"rlimit_as\":%ld,\"rlimit_data\":%ld,\"rlimit_nofile\":%ld,", rlim(RLIMIT_AS), rlim(RLIMIT_DATA), rlim(RLIMIT_NOFILE));
    struct rlimit fz;
    getrlimit(RLIMIT_FSIZE, &fz);
    bfmt(b, "\"rlimit_fsize\":%lld,\"rlimit_fsize_hard\":%lld,", fz.rlim_cur == RLIM_INFINITY ? -1LL : (long long)fz.rlim_cur,
         fz.rlim_max == RLIM_INFINITY ? -1LL : (long long)fz.rlim_max);
    bfmt(b, "\"cap_sys_rawio\":%s,\"privileged\":%s,\"cap_dac_override\":%s,\"cap_fowner\":%s,\"cap_setuid\":%s,",
         has_cap(17) ? "true" : "false", has_cap(14) ? "true" : "false", has_cap(1) ? "true" : "false",
         has_cap(3) ? "true" : "false", has_cap(7) && has_cap(6) ? "true" : "false");
    bfmt(b, "\"pagemap_pfns\":%s,\"shm_private\":%s", has_cap(21) ? "true" : "false", g_shm_private_wanted ? "true" : "false");
    bstr(b, "}}");
}

/* the program's main process died (its pipe to the supervisor ended): the answers it wrote are
   out already; how it died goes to standard error (the harness reports a crash at the first
   request left unanswered) */
static int main_died(void) {
    char how[100];
    describe_death(main_pid, how, sizeof how);
    fprintf(stderr, "memspec-agent: the program's main process died: %s\n", how);
    return 71;
}

/* The supervisor: requests in on standard input, one line each; calls and observes go on to
   the program's main process as they come (several may be on their way: a pipelined program),
   and main answers them on standard output itself; everything else is answered here, once main
   has answered the requests before it. */
#define CALL_LINE "{\"type\":\"call\",\"id\":"
#define OBSERVE_LINE "{\"type\":\"observe\",\"id\":"

int main(int argc, char **argv) {
    struct buf line = {0}, reply = {0};
    g_blocks = argc > 1 && !strcmp(argv[1], "--answer-blocks");
    struct req *m = malloc(sizeof *m);
    size_t have = 0, start = 0, cap = 0;
    char *acc = NULL;
    signal(SIGPIPE, SIG_IGN);
    /* a write past RLIMIT_FSIZE (set_fsize_limit) sends SIGXFSZ, which would kill the program's
       process by default: ignored, the write fails with EFBIG (as under CPython, the linux target) */
    signal(SIGXFSZ, SIG_IGN);
    /* the agent's own memory from the brk heap beside its binary, never from mmap: a mapping
       of its own among the program's (where the kernel puts them) would be refused */
    mallopt(M_MMAP_MAX, 0);
    reserve_heap();
    /* what every program's main starts with, found once: its fault handlers (a fault of the
       supervisor's own still ends it, on_fault), its capabilities, $TMPDIR */
    install_handler();
    g_cap_sys_admin = has_cap(21);
    g_tmp = getenv("TMPDIR");
    g_in = dup(0);
    g_out = dup(1);
    if (g_in < 0 || g_out < 0) die("dup");
    g_in = high_fd(g_in);
    g_out = high_fd(g_out);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0) die("/dev/null");
    close(null);
    for (;;) {
        char *nl = acc ? memchr(acc + start, '\n', have - start) : NULL;
        if (!nl) {
            /* no whole request waits: main gets what came for it */
            if (flush_main() < 0) return main_died();
            if (start) { memmove(acc, acc + start, have - start); have -= start; start = 0; }
            struct pollfd pf[2] = {{g_in, POLLIN, 0}, {main_r, POLLIN, 0}};
            if (poll(pf, main_pid ? 2 : 1, -1) < 0) {
                if (errno == EINTR) continue;
                die("poll");
            }
            /* main writes to the supervisor only when asked (sync_main): this is its end */
            if (main_pid && pf[1].revents) return main_died();
            if (pf[0].revents) {
                if (cap - have < (1 << 16) + 1) { cap = have + (1 << 17); acc = realloc(acc, cap); if (!acc) die("out of memory"); }
                ssize_t k = read(g_in, acc + have, cap - have - 1);
                if (k < 0 && errno == EINTR) continue;
                if (k <= 0) {       /* the harness is gone: what it asked is answered, then the end */
                    end_program();
                    return 0;
                }
                have += (size_t)k;
            }
            continue;
        }
        size_t len = (size_t)(nl - (acc + start));
        const char *at = acc + start;
        start += len + 1;
        /* a call or an observe as memspec writes it goes on to main unparsed (main parses it,
           and answers a malformed one with the error this process would give) */
        const char *err = NULL;
        int fast = (len >= sizeof CALL_LINE - 1 && !memcmp(at, CALL_LINE, sizeof CALL_LINE - 1)) ||
                   (len >= sizeof OBSERVE_LINE - 1 && !memcmp(at, OBSERVE_LINE, sizeof OBSERVE_LINE - 1));
        if (!fast) {
            line.n = 0;
            bput(&line, at, len);
            err = parse_req(line.p, m);
        }
        if (fast || (!err && (!strcmp(m->type, "call") || !strcmp(m->type, "observe")))) {
            if (!main_pid) start_program();
            bframe(&to_main, at, len);
            main_owes = 1;
            continue;
        }
        reply.n = 0;
        bput(&reply, "", 0);
        if (!err && (!strcmp(m->type, "reset") || !strcmp(m->type, "bye"))) end_program();
        else if (sync_main() < 0) return main_died();
        if (err) {
            bstr(&reply, "{\"type\":\"error\",\"id\":null,\"message\":");
            bjson_str(&reply, err);
            bstr(&reply, "}");
        } else if (!strcmp(m->type, "hello")) {
            hello(&reply);
        } else if (!strcmp(m->type, "reset")) {
            bfmt(&reply, "{\"type\":\"reply\",\"id\":%" PRId64 ",\"value\":0}", m->id);
        } else if (!strcmp(m->type, "bye")) {
            return 0;
        } else {
            bfmt(&reply, "{\"type\":\"error\",\"id\":%" PRId64 ",\"message\":\"unknown request type\"}", m->has_id ? m->id : 0);
        }
        bput(&reply, "\n", 1);
        if (write_all(g_out, reply.p, reply.n) < 0) return 0;
    }
}
