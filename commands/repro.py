"""``memspec repro FILE --target T``: a reproducer that runs without memspec or Python.

For the os layer (target ``linux``) and the malloc family of the phys layer (``libc``,
``malloc:NAME``) it writes one C99 file that makes the same calls in the same processes (a forked
process per ``pN = fork()``), checks each outcome against what the model allowed, and at the first
divergence prints the call, the clause with its citation, expected and observed, and exits 1 (0
when every call conforms).  Beside it a README: what it shows, the spec text, expected, observed,
the version it was seen on, and how to build and run it.

What the model allowed is computed here, at repro time, by running the program once on the target
and replaying the observed run through the model call by call (``model.expect`` is what the judge
asks).  Each call's check in C is then one of:

* the exact set of allowed outcomes (the model's ``allowed`` tuple), values that equal an earlier
  named result written as that result (``R_a + 0x1000``), so that a run with other addresses
  (ASLR) is judged the same way;
* for a rule that is a predicate (an address the kernel or allocator picks), the classes of
  outcome the predicate accepts, found by asking it: which errnos (with which return value), which
  signals, whether ``ok`` or a NULL without errno is allowed, and for a returned address, whether
  one far from everything is allowed and to which power of two it must be aligned; a block from the
  malloc family must also not overlap a live block (the C file keeps the table of live blocks, as
  the libc target does).

A failure the judge finds at a checkpoint (the mappings compared after a call) is not a call's
outcome: the C file reproduces the calls and says so (the README too).

A new os call needs its C form here (``OS_CALLS`` and ``_dispatch``: a raw system call goes in
``_dispatch``'s table, anything else gets a ``c_NAME`` helper doing what the linux target does);
until then ``memspec repro`` says it has none.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from memspec.consts import SANDBOX_WINDOW
from memspec.errors import TargetError, UsageError
from memspec.program import Program, Ref, Str, bind_result, eval_arg, eval_args, format_call, load
from memspec.records import Outcome, RunStatus

HEAP_CALLS = ("malloc", "calloc", "realloc", "free", "posix_memalign", "aligned_alloc", "memalign",
              "malloc_usable_size", "heap_store", "heap_load", "heap_fill", "heap_count")
OS_CALLS = ("mmap", "munmap", "mprotect", "load", "store", "fetch", "fork", "exit", "mremap", "madvise", "msync",
            "mincore", "mlock", "mlock2", "munlock", "mlockall", "munlockall", "set_memlock_limit",
            "drop_privileges", "shm_open", "shm_unlink", "memfd_create", "open_file", "pipe", "ftruncate", "close",
            "pfn_of", "thp_mapped", "minflt", "majflt", "get_node", "mbind", "read", "write", "pread", "pwrite",
            "lseek", "mseal")
ERRNOS = ("EPERM", "ENOENT", "ESRCH", "EINTR", "EIO", "ENXIO", "E2BIG", "EBADF", "ECHILD", "EAGAIN", "ENOMEM",
          "EACCES", "EFAULT", "EBUSY", "EEXIST", "ENODEV", "ENOTDIR", "EISDIR", "EINVAL", "ENFILE", "EMFILE",
          "ETXTBSY", "EFBIG", "ENOSPC", "ESPIPE", "EROFS", "EOVERFLOW", "ENAMETOOLONG", "EOPNOTSUPP", "ENOSYS",
          "ELOOP", "EXDEV")
SIGNALS = ("SIGSEGV", "SIGBUS")
FAR = 0x500000000000          # an address nothing uses: far from the heap, the stack and the sandbox window
assert not SANDBOX_WINDOW[0] <= FAR < SANDBOX_WINDOW[1]


@dataclass
class CallCheck:
    """What the C file checks for one call."""

    index: int
    text: str
    clause: str
    statement: str
    citation: str
    expected: str                 # the model's description
    exact: list[Outcome] | None = None     # the allowed outcomes, when the rule lists them
    any_outcome: bool = False     # the model cannot decide (never a failure)
    errnos: list[tuple[int, str]] = field(default_factory=list)   # (return value, errno) allowed
    signals: list[str] = field(default_factory=list)
    ok: bool = False              # no value, no errno, no signal
    null: bool = False            # NULL without errno
    success: bool = False         # some returned value is allowed
    align: int = 0                # ... aligned to this (0: any value)
    range: tuple[int, int, int] | None = None   # (lo, hi, alignment) of the values a ranged rule accepts
    heap_block: bool = False      # ... a malloc block that must not overlap a live one
    observed: Outcome | None = None
    diverges: bool = False        # the observed outcome was refused here


@dataclass
class Repro:
    program: Program
    target: str
    layer: str
    version: str
    checks: list[CallCheck]
    verdict: str                  # "pass", "fail" or "not-applicable"/"unsupported" with why
    failure: Any = None           # the judge's failing check
    env: dict[str, int] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    stopped: str = ""             # why the target's run stopped early (a refusal), "" if it did not


def _c_string(s: str) -> str:
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\{ord(c):03o}" for c in s) + '"'


def _num(v: int) -> str:
    v &= (1 << 64) - 1
    return f"{v:#x}ULL" if v > 0x7FFFFFFF else str(v)


def _allowed_classes(exp: Any, observed: Outcome, heap: bool, call_name: str) -> dict[str, Any]:
    """Ask the rule's predicate which classes of outcome it accepts (see the module docstring)."""
    judge = exp.judge
    out: dict[str, Any] = {"errnos": [], "signals": [], "ok": False, "null": False, "success": False, "align": 0}
    for e in ERRNOS:
        for v in (-1, 0):
            if judge(Outcome(value=v, errno=e)) is None:
                out["errnos"].append((v, e))
    out["signals"] = [s for s in SIGNALS if judge(Outcome(signal=s)) is None]
    out["ok"] = judge(Outcome()) is None
    out["null"] = judge(Outcome(value=0)) is None
    if judge(Outcome(value=FAR)) is None:
        out["success"] = True
        out["align"] = next((1 << k for k in range(0, 31) if judge(Outcome(value=FAR + (1 << k))) is None), 1 << 31)
    else:
        # the rule accepts values in a range only (a count "between 0 and N", MAP_32BIT's first
        # 2 GiB): from a value it accepts (the observed one, else its own), the alignment it needs
        # and how far the accepted values reach either way
        seed = next((o.value for o in (observed, exp.default)
                     if o.ok and o.value is not None and judge(o) is None), None)
        if seed is not None:
            out["range"] = _accepted_range(judge, seed)
    return out


def _accepted_range(judge: Any, seed: int) -> tuple[int, int, int]:
    def okv(v: int) -> bool:
        return 0 <= v < (1 << 64) and judge(Outcome(value=v)) is None
    align = next((1 << k for k in range(0, 31) if okv(seed + (1 << k)) or okv(seed - (1 << k))), 0)
    if not align:
        return seed, seed, 1
    ends = []
    for sign in (1, -1):
        good, step = seed, align
        while step < (1 << 64) and okv(seed + sign * step):
            good, step = seed + sign * step, step * 2
        bad = seed + sign * step
        while abs(bad - good) > align:           # bisect between the last accepted and the first refused
            mid = good + sign * ((abs(bad - good) // 2) // align * align or align)
            if okv(mid):
                good = mid
            else:
                bad = mid
        ends.append(good)
    return ends[1], ends[0], align


def analyse(program: Program, target: Any, facts: dict[str, Any]) -> Repro:
    """Run ``program`` once on ``target``, judge it, and replay the run through the model to find
    what each call may do."""
    from memspec.model.registry import new_model
    from memspec.specs.catalogue import get as clause_of
    from memspec.specs.judge import judge
    layer = program.layer
    for _ in range(3):
        # the linux target refuses a call that would touch the interpreter's own mappings, which
        # move from run to run (ASLR): a refusal is taken as the verdict only when it comes back
        run = target.run(program, observe="end")
        if run.status is not RunStatus.REFUSED:
            break
    j = judge(program, run, target.name, facts)
    version = str(facts.get("impl_version", ""))
    if run.status is RunStatus.REFUSED and not run.outcomes:
        return Repro(program, target.name, layer, version, [], "unsupported: " + (run.message or "refused"), j.failure)
    model = new_model(layer, facts)
    env: dict[str, int] = {}
    checks: list[CallCheck] = []
    heap = layer == "phys"
    for i, call in enumerate(program.calls):
        if i >= len(run.outcomes):
            break
        args = eval_args(call, env)
        exp = model.expect(call.proc or "main", call.name, args)
        o = run.outcomes[i]
        why = exp.judge(o)
        cid = exp.blame(o) if why is not None else exp.clause
        c = clause_of(cid)
        cc = CallCheck(i, format_call(call), cid, c.statement, c.citation, exp.describe, observed=o,
                       diverges=why is not None)
        if exp.unknown:
            cc.any_outcome = True
        elif exp.predicate is None:
            cc.exact = list(exp.allowed if exp.allowed is not None else (exp.default,))
        else:
            k = _allowed_classes(exp, o, heap, call.name)
            cc.errnos, cc.signals, cc.ok, cc.null = k["errnos"], k["signals"], k["ok"], k["null"]
            cc.success, cc.align = k["success"], k["align"]
            cc.range = k.get("range")
            cc.heap_block = heap and call.name in ("malloc", "calloc", "realloc", "aligned_alloc", "memalign",
                                                  "posix_memalign") and cc.success
        checks.append(cc)
        # past a divergence the model adopts what the target did, as far as it can, so that the C
        # file checks every call: where the divergence shows may depend on state the C process does
        # not share with the target's (the allocator's heap after an interpreter's own allocations)
        try:
            model.apply(call.proc or "main", call.name, args, o)
            model.bind(call.proc or "main", call.name, call.result, o)
        except Exception:       # the model cannot take that outcome: the C file stops at this call
            break
        bind_result(env, call, o.value)
    f = j.failure
    verdict = "pass" if f is None else ("fail" if f.verdict.value == "fail" else f.verdict.value)
    # a refusal part-way (the calls before it judged, as memspec does): the C file stops there too
    stopped = run.message if run.status is RunStatus.REFUSED else ""
    return Repro(program, target.name, layer, version, checks, verdict, f, env, facts, stopped)


# ---------------------------------------------------------------------------------------------
# C

_PRELUDE = r'''/* A standalone reproducer written by `memspec repro`: C99 and the C library only.
 * Build: cc -O2 -o repro repro.c    Run: see README.  Exit 0: every call conforms; 1: a divergence. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <malloc.h>

#ifndef SYS_mseal
#define SYS_mseal 462      /* x86-64, Linux 6.10 */
#endif

typedef unsigned long long u64;
enum { K_OK, K_VALUE, K_ERRNO, K_SIGNAL, K_DIED };
typedef struct { int kind; long long value; int err; int sig; } outcome;

static const struct { int e; const char *name; } ERRNAMES[] = {
  {EPERM,"EPERM"},{ENOENT,"ENOENT"},{ESRCH,"ESRCH"},{EINTR,"EINTR"},{EIO,"EIO"},{ENXIO,"ENXIO"},{E2BIG,"E2BIG"},
  {EBADF,"EBADF"},{ECHILD,"ECHILD"},{EAGAIN,"EAGAIN"},{ENOMEM,"ENOMEM"},{EACCES,"EACCES"},{EFAULT,"EFAULT"},
  {EBUSY,"EBUSY"},{EEXIST,"EEXIST"},{ENODEV,"ENODEV"},{ENOTDIR,"ENOTDIR"},{EISDIR,"EISDIR"},{EINVAL,"EINVAL"},
  {ENFILE,"ENFILE"},{EMFILE,"EMFILE"},{ETXTBSY,"ETXTBSY"},{EFBIG,"EFBIG"},{ENOSPC,"ENOSPC"},{ESPIPE,"ESPIPE"},
  {EROFS,"EROFS"},{EOVERFLOW,"EOVERFLOW"},{ENAMETOOLONG,"ENAMETOOLONG"},{EOPNOTSUPP,"EOPNOTSUPP"},
  {ENOSYS,"ENOSYS"},{ELOOP,"ELOOP"},{EXDEV,"EXDEV"}};
static const char *errname(int e) {
  for (size_t i = 0; i < sizeof ERRNAMES / sizeof ERRNAMES[0]; i++) if (ERRNAMES[i].e == e) return ERRNAMES[i].name;
  static char b[32]; snprintf(b, sizeof b, "errno %d", e); return b;
}
static const char *signame(int s) { return s == SIGSEGV ? "SIGSEGV" : s == SIGBUS ? "SIGBUS" : "signal"; }
static void describe(const outcome *o, char *b, size_t n) {
  switch (o->kind) {
  case K_OK: snprintf(b, n, "ok"); break;
  case K_ERRNO: snprintf(b, n, "-1 %s", errname(o->err)); break;
  case K_SIGNAL: snprintf(b, n, "%s", signame(o->sig)); break;
  case K_DIED: snprintf(b, n, "the process died"); break;
  default:
    if (o->value == 0 && o->err) snprintf(b, n, "0 (errno %s)", errname(o->err));
    else if (o->value >= 4096 || o->value <= -4096) snprintf(b, n, "%#llx", (u64)o->value);
    else snprintf(b, n, "%lld", o->value);
  }
}
static outcome ok(void) { outcome o = {K_OK, 0, 0, 0}; return o; }
static outcome val(long long v) { outcome o = {K_VALUE, v, 0, 0}; return o; }
static outcome sysret(long r) {
  outcome o = {K_VALUE, r, 0, 0};
  if (r == -1) { o.kind = K_ERRNO; o.err = errno; }
  return o;
}
/* an allocator's NULL: errno as the call left it (0: none) */
static outcome ptrret(void *p) { outcome o = {K_VALUE, (long long)(uintptr_t)p, p ? 0 : errno, 0}; return o; }

/* the checks: 1 if o is the allowed outcome */
static int is_ok(const outcome *o) { return o->kind == K_OK; }
static int is_val(const outcome *o, u64 v) { return o->kind == K_VALUE && (u64)o->value == v && !o->err; }
static int is_err(const outcome *o, long long v, int e) {
  return (o->kind == K_ERRNO && v == -1 && o->err == e) || (o->kind == K_VALUE && o->value == v && o->err == e);
}
static int is_sig(const outcome *o, int s) { return o->kind == K_SIGNAL && o->sig == s; }
static int is_range(const outcome *o, u64 lo, u64 hi, u64 align) {
  return o->kind == K_VALUE && !o->err && (u64)o->value >= lo && (u64)o->value <= hi && (u64)o->value % align == 0;
}
static int is_null(const outcome *o) { return o->kind == K_VALUE && o->value == 0 && !o->err; }
static int is_addr(const outcome *o, u64 align) {
  return o->kind == K_VALUE && !o->err && o->value != 0 && o->value != -1 && (align < 2 || (u64)o->value % align == 0);
}

/* ---- memory accesses that may fault: a SIGSEGV/SIGBUS handler and sigsetjmp ---------------- */
static sigjmp_buf probe_jb;
static volatile sig_atomic_t probe_sig;
static volatile uintptr_t fetch_target;
static void on_fault(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  if (fetch_target) _exit((uintptr_t)si->si_addr == fetch_target ? (sig == SIGBUS ? 13 : 10) : 11);
  probe_sig = sig; siglongjmp(probe_jb, 1);
}
static void install_handler(void) {
  struct sigaction sa; memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault; sa.sa_flags = SA_SIGINFO | SA_NODEFER; sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, 0); sigaction(SIGBUS, &sa, 0);
}
static outcome c_load(u64 a) {
  if (sigsetjmp(probe_jb, 1)) { outcome o = {K_SIGNAL, 0, 0, probe_sig}; return o; }
  unsigned char v = *(volatile unsigned char *)(uintptr_t)a;
  return val(v);
}
static outcome c_store(u64 a, u64 v) {
  if (sigsetjmp(probe_jb, 1)) { outcome o = {K_SIGNAL, 0, 0, probe_sig}; return o; }
  *(volatile unsigned char *)(uintptr_t)a = (unsigned char)v;
  return ok();
}
/* an instruction fetch at a: in a forked process, which exits 10 (13) if the fetch itself faulted */
static outcome c_fetch(u64 a) {
  pid_t pid = fork();
  if (pid == 0) { fetch_target = (uintptr_t)a; alarm(1); ((void (*)(void))(uintptr_t)a)(); _exit(12); }
  int st = 0; waitpid(pid, &st, 0);
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  if (code == 10) { outcome o = {K_SIGNAL, 0, 0, SIGSEGV}; return o; }
  if (code == 13) { outcome o = {K_SIGNAL, 0, 0, SIGBUS}; return o; }
  return ok();
}
'''

_OS_HELPERS = r'''
/* ---- the os layer's calls, as the linux target makes them (raw system calls) --------------- */
static char shm_prefix[64];
static char tmpdir[256];
static int nfiles;
static int pagemap_fd = -1;
static long flt0[2];
static void start_process(void) {
  pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
  struct rusage ru; getrusage(RUSAGE_SELF, &ru); flt0[0] = ru.ru_minflt; flt0[1] = ru.ru_majflt;
}
static void shm_name(const char *name, char *out, size_t n) {
  /* names get this run's prefix (one system-wide namespace); names the C library rejects stay as written */
  const char *s = name; while (*s == '/') s++;
  if (!*s || strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, "..") || strlen(s) + strlen(shm_prefix) > 255) {
    snprintf(out, n, "%s", name); return;
  }
  snprintf(out, n, "/%s%s", shm_prefix, s);
}
static outcome c_shm_open(const char *name, u64 oflag, u64 mode) {
  char real[300]; shm_name(name, real, sizeof real); errno = 0;
  int fd = shm_open(real, (int)oflag, (mode_t)mode);
  return fd < 0 ? sysret(-1) : val(fd);
}
static outcome c_shm_unlink(const char *name) {
  char real[300]; shm_name(name, real, sizeof real); errno = 0;
  return shm_unlink(real) < 0 ? sysret(-1) : val(0);
}
static outcome c_memfd_create(const char *name, u64 flags) { return sysret(syscall(SYS_memfd_create, name, (unsigned)(flags & ~1ULL))); }
static outcome c_open_file(u64 size, u64 oflag) {
  char path[400];
  snprintf(path, sizeof path, "%s/f%d-%d", tmpdir, (int)getpid(), ++nfiles);
  int fd = open(path, O_CREAT | O_RDWR, 0600);
  if (fd < 0 || ftruncate(fd, (off_t)size) < 0) return sysret(-1);
  close(fd);
  return sysret(open(path, (int)(oflag & 3)));
}
static outcome c_pipe(void) { int p[2]; if (pipe(p) < 0) return sysret(-1); return val(p[0]); }
static outcome c_set_memlock_limit(long long soft) {
  struct rlimit r; getrlimit(RLIMIT_MEMLOCK, &r);
  r.rlim_cur = soft < 0 ? RLIM_INFINITY : (rlim_t)soft;
  return setrlimit(RLIMIT_MEMLOCK, &r) < 0 ? sysret(-1) : val(0);
}
static outcome c_drop_privileges(void) {
  if (setgroups(0, 0) < 0 || setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0) return sysret(-1);
  return val(0);
}
static u64 pagemap_pfn(u64 a) {
  uint64_t e = 0;
  if (pagemap_fd < 0 || pread(pagemap_fd, &e, 8, (off_t)((a >> 12) * 8)) != 8) return 0;
  return e >> 63 ? e & ((1ULL << 55) - 1) : 0;
}
static outcome c_pfn_of(u64 a) { return val((long long)pagemap_pfn(a)); }
static outcome c_thp_mapped(u64 a) {
  u64 pfn = pagemap_pfn(a); uint64_t fl = 0;
  if (!pfn) return val(0);
  int fd = open("/proc/kpageflags", O_RDONLY);
  if (fd < 0 || pread(fd, &fl, 8, (off_t)(pfn * 8)) != 8) { if (fd >= 0) close(fd); return val(0); }
  close(fd);
  return val((fl >> 22) & 1);
}
static outcome c_flt(int which) {
  struct rusage ru; getrusage(RUSAGE_SELF, &ru);
  return val(which ? ru.ru_majflt - flt0[1] : ru.ru_minflt - flt0[0]);
}
static outcome c_get_node(u64 a) {
  void *page = (void *)(uintptr_t)a; int status = -999;
  long r = syscall(SYS_move_pages, 0, 1UL, &page, 0, &status, 0);
  if (r < 0) return sysret(-1);
  if (status < 0) { outcome o = {K_ERRNO, -1, -status, 0}; return o; }
  return val(status);
}
static outcome c_mbind(u64 a, u64 len, u64 mode, u64 mask) {
  unsigned long m = (unsigned long)mask;
  return sysret(syscall(SYS_mbind, a, len, mode, &m, 64UL, 0UL));
}
static outcome c_mincore(u64 a, u64 len) {
  u64 npages = (len + 4095) / 4096, room = npages > (1ULL << 30) ? (1ULL << 30) : npages;
  unsigned char *vec = mmap(0, room ? room : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  long r = syscall(SYS_mincore, a, len, vec);
  if (r < 0) { outcome o = sysret(-1); munmap(vec, room ? room : 1); return o; }
  u64 bits = 0;
  for (u64 i = 0; i < room && i < 64; i++) if (vec[i] & 1) bits |= 1ULL << i;
  munmap(vec, room ? room : 1);
  return val((long long)bits);
}
/* one byte read (its value, or 256 at end of file) and count bytes of one value written, as the
   linux target does */
static outcome c_read1(u64 fd, int positional, u64 off) {
  unsigned char b = 0;
  long r = positional ? syscall(SYS_pread64, fd, &b, 1UL, off) : syscall(SYS_read, fd, &b, 1UL);
  if (r < 0) return sysret(-1);
  return val(r == 1 ? b : 256);
}
static outcome c_read(u64 fd) { return c_read1(fd, 0, 0); }
static outcome c_pread(u64 fd, u64 off) { return c_read1(fd, 1, off); }
static outcome c_writen(u64 fd, u64 v, u64 count, int positional, u64 off) {
  size_t n = count ? (size_t)count : 1;
  unsigned char *buf = malloc(n);
  if (!buf) return sysret(-1);
  memset(buf, (int)(v & 0xff), n);
  long r = positional ? syscall(SYS_pwrite64, fd, buf, count, off) : syscall(SYS_write, fd, buf, count);
  outcome o = sysret(r);
  free(buf);
  return o;
}
static outcome c_write(u64 fd, u64 v, u64 count) { return c_writen(fd, v, count, 0, 0); }
static outcome c_pwrite(u64 fd, u64 off, u64 v, u64 count) { return c_writen(fd, v, count, 1, off); }
static outcome c_lseek(u64 fd, u64 off, u64 whence) { return sysret(syscall(SYS_lseek, fd, off, whence)); }
static void cleanup_files(void) {
  DIR *d = opendir(tmpdir); struct dirent *e; char p[600];
  if (!d) return;
  while ((e = readdir(d))) if (e->d_name[0] != '.') { snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name); unlink(p); }
  closedir(d); rmdir(tmpdir);
}
'''

_HEAP_HELPERS = r'''
/* ---- the malloc family, through volatile pointers so that the compiler keeps every call ---- */
static void *(*volatile p_malloc)(size_t) = malloc;
static void *(*volatile p_calloc)(size_t, size_t) = calloc;
static void *(*volatile p_realloc)(void *, size_t) = realloc;
static void (*volatile p_free)(void *) = free;
static void *(*volatile p_aligned_alloc)(size_t, size_t) = aligned_alloc;
static void *(*volatile p_memalign)(size_t, size_t) = memalign;
static int (*volatile p_posix_memalign)(void **, size_t, size_t) = posix_memalign;
static size_t (*volatile p_usable)(void *) = malloc_usable_size;

/* live blocks (pointer, size asked for), as the libc target keeps them */
#define MAXLIVE 4096
static u64 live_p[MAXLIVE], live_n[MAXLIVE]; static int nlive;
static void live_add(u64 p, u64 n) { if (nlive < MAXLIVE) { live_p[nlive] = p; live_n[nlive] = n; nlive++; } }
static void live_del(u64 p) { for (int i = 0; i < nlive; i++) if (live_p[i] == p) { live_p[i] = live_p[--nlive]; live_n[i] = live_n[nlive]; return; } }
static int overlaps_live(u64 p, u64 n) {
  u64 e = p + (n ? n : 1);
  for (int i = 0; i < nlive; i++) if (p < live_p[i] + (live_n[i] ? live_n[i] : 1) && live_p[i] < e) return 1;
  return 0;
}
static outcome c_malloc(u64 n) { errno = 0; return ptrret(p_malloc((size_t)n)); }
static outcome c_calloc(u64 m, u64 n) { errno = 0; return ptrret(p_calloc((size_t)m, (size_t)n)); }
static outcome c_realloc(u64 p, u64 n) { errno = 0; return ptrret(p_realloc((void *)(uintptr_t)p, (size_t)n)); }
static outcome c_free(u64 p) { p_free((void *)(uintptr_t)p); return ok(); }
static outcome c_aligned_alloc(u64 a, u64 n) { errno = 0; return ptrret(p_aligned_alloc((size_t)a, (size_t)n)); }
static outcome c_memalign(u64 a, u64 n) { errno = 0; return ptrret(p_memalign((size_t)a, (size_t)n)); }
static outcome c_posix_memalign(u64 a, u64 n) {
  void *p = 0; int r = p_posix_memalign(&p, (size_t)a, (size_t)n);
  if (r) { outcome o = {K_VALUE, 0, r, 0}; return o; }
  return ptrret(p);
}
static outcome c_malloc_usable_size(u64 p) { return val((long long)p_usable((void *)(uintptr_t)p)); }
static outcome c_heap_store(u64 a, u64 v) { *(volatile unsigned char *)(uintptr_t)a = (unsigned char)v; return ok(); }
static outcome c_heap_load(u64 a) { return val(*(volatile unsigned char *)(uintptr_t)a); }
static outcome c_heap_fill(u64 a, u64 n, u64 v) { memset((void *)(uintptr_t)a, (int)(v & 0xff), (size_t)n); return ok(); }
static outcome c_heap_count(u64 a, u64 n, u64 v) {
  long long c = 0; for (u64 i = 0; i < n; i++) c += ((unsigned char *)(uintptr_t)a)[i] == (unsigned char)v; return val(c);
}
static void limit_memory(u64 budget) {
  /* the libc target's memory limit: what the process maps now plus the budget (RLIMIT_AS) */
  if (!budget) return;
  FILE *f = fopen("/proc/self/statm", "r"); unsigned long pages = 0;
  if (f) { if (fscanf(f, "%lu", &pages) != 1) pages = 0; fclose(f); }
  struct rlimit r = { (rlim_t)(pages * 4096 + budget), (rlim_t)(pages * 4096 + budget) };
  setrlimit(RLIMIT_AS, &r);
}
'''

_PROCS = r'''
/* ---- processes: a worker per program process; the coordinator sends it calls ------------ */
#define NPROC %(nproc)d
typedef struct { int idx; u64 a[6]; } request;
static int req_pipe[NPROC][2], rep_pipe[NPROC][2];
static pid_t worker_pid[NPROC];
static outcome do_call(int idx, const u64 *A);
static void serve(int slot) {
  request rq;
  for (;;) {
    if (read(req_pipe[slot][0], &rq, sizeof rq) != (ssize_t)sizeof rq) _exit(0);
    outcome o = do_call(rq.idx, rq.a);
    if (write(rep_pipe[slot][1], &o, sizeof o) != (ssize_t)sizeof o) _exit(3);
  }
}
static void start_worker(int slot) {  /* in the coordinator: the program's first process */
  pid_t pid = fork();
  if (pid == 0) { install_handler(); start_process(); serve(slot); }
  worker_pid[slot] = pid;
}
static outcome c_fork(int slot) {       /* in a worker: its child serves the new process's slot */
  pid_t pid = fork();
  if (pid < 0) return sysret(-1);
  if (pid == 0) { start_process(); serve(slot); }
  return val(pid);
}
static outcome c_exit(void) {
  outcome o = ok();
  /* the reply goes first: the coordinator waits for it */
  return o;
}
static outcome run_in(int slot, int idx, const u64 *A) {
  request rq; memset(&rq, 0, sizeof rq); rq.idx = idx; memcpy(rq.a, A, sizeof rq.a);
  outcome o = {K_DIED, 0, 0, 0};
  if (write(req_pipe[slot][1], &rq, sizeof rq) != (ssize_t)sizeof rq) return o;
  if (read(rep_pipe[slot][0], &o, sizeof o) != (ssize_t)sizeof o) { outcome d = {K_DIED, 0, 0, 0}; return d; }
  return o;
}
'''


def _expr_for(v: int, env: dict[str, int]) -> str:
    """``v`` written as an earlier named result plus an offset when it is one (addresses differ run
    to run), else as a number."""
    u = v & ((1 << 64) - 1)
    if u >= 0x10000 and u < (1 << 63):
        best = None
        for name, b in env.items():
            b &= (1 << 64) - 1
            if b >= 0x10000 and 0 <= u - b < (1 << 30) and (best is None or u - b < best[1]):
                best = (name, u - b)
        if best is not None:
            return f"(R_{best[0]} + {_num(best[1])})" if best[1] else f"R_{best[0]}"
    return _num(v)


def _cond_exact(o: Outcome, env: dict[str, int]) -> str:
    if o.signal:
        return f"is_sig(&o, {o.signal if o.signal in SIGNALS else -1})"
    if o.errno:
        return f"is_err(&o, {o.value if o.value is not None else -1}, {o.errno})"
    if o.value is None:
        return "is_ok(&o)"
    return f"is_val(&o, {_expr_for(o.value, env)})"


def _condition(cc: CallCheck, env: dict[str, int], size_expr: str) -> str:
    if cc.any_outcome:
        return "1"
    if cc.exact is not None:
        return " || ".join(_cond_exact(o, env) for o in cc.exact) or "0"
    parts = [f"is_err(&o, {v}, {e})" for v, e in cc.errnos]
    parts += [f"is_sig(&o, {s})" for s in cc.signals]
    if cc.ok:
        parts.append("is_ok(&o)")
    if cc.null:
        parts.append("is_null(&o)")
    if cc.range is not None:
        lo, hi, al = cc.range
        parts.append(f"is_range(&o, {_num(lo)}, {_num(hi)}, {_num(al)})")
    if cc.success:
        succ = f"is_addr(&o, {_num(cc.align)})"
        if cc.heap_block:
            succ = f"({succ} && !overlaps_live((u64)o.value, {size_expr}))"
        parts.append(succ)
    return " || ".join(parts) or "0"


def _arg_c(a: Any) -> str:
    if isinstance(a, Ref):
        return f"(R_{a.name} + {_num(a.offset)})" if a.offset else f"R_{a.name}"
    if isinstance(a, Str):
        return "0"
    v = eval_arg(a, {})
    return f"(u64){v}LL" if isinstance(v, int) and v < 0 else _num(int(v))


def _dispatch(call: Any, slots: dict[str, int]) -> str:
    n = call.name
    strs = [a.value for a in call.args if isinstance(a, Str)]
    A = [f"A[{k}]" for k in range(len(call.args))]
    if n == "fork":
        return f"c_fork({slots[call.result]})"
    if n == "exit":
        return "c_exit()"
    if n in ("shm_open",):
        return f"c_shm_open({_c_string(strs[0])}, A[1], A[2])"
    if n == "shm_unlink":
        return f"c_shm_unlink({_c_string(strs[0])})"
    if n == "memfd_create":
        return f"c_memfd_create({_c_string(strs[0])}, A[1])"
    sysnr = {"mmap": "SYS_mmap", "munmap": "SYS_munmap", "mprotect": "SYS_mprotect", "mremap": "SYS_mremap",
             "madvise": "SYS_madvise", "msync": "SYS_msync", "mlock": "SYS_mlock", "mlock2": "SYS_mlock2",
             "munlock": "SYS_munlock", "mlockall": "SYS_mlockall", "munlockall": "SYS_munlockall",
             "ftruncate": "SYS_ftruncate", "close": "SYS_close", "mseal": "SYS_mseal"}
    if n in sysnr:
        return f"sysret(syscall({', '.join([sysnr[n]] + A)}))"
    if n in ("minflt", "majflt"):
        return f"c_flt({1 if n == 'majflt' else 0})"
    if n == "posix_memalign" or n in HEAP_CALLS or n in OS_CALLS:
        return f"c_{n}({', '.join(A)})"
    raise UsageError(f"repro: no C form for {n}")


def c_source(r: Repro) -> str:
    prog = r.program
    heap = r.layer == "phys"
    procs = ["main"] + [c.result for c in prog.calls if c.name == "fork" and c.result]
    slots = {p: k for k, p in enumerate(procs)}
    names = sorted({c.result for c in prog.calls if c.result and c.name != "fork"}
                   | {a.name for c in prog.calls for a in c.args if isinstance(a, Ref)})
    out = [_PRELUDE]
    out.append(_HEAP_HELPERS if heap else _OS_HELPERS)
    if heap:
        out.append("static void start_process(void) {}\n")
    out.append(_PROCS % {"nproc": len(procs)})
    out.append("/* named results */\n" + "".join(f"static long long R_{n} = -1;\n" for n in names))
    shm_names = sorted({a.value for c in prog.calls if c.name in ("shm_open", "shm_unlink") for a in c.args
                        if isinstance(a, Str)})
    # the worker's side: one case per call
    out.append("\nstatic outcome do_call(int idx, const u64 *A) {\n  (void)A;\n  switch (idx) {\n")
    for cc in r.checks:
        call = prog.calls[cc.index]
        body = _dispatch(call, slots)
        if call.name == "exit":
            out.append(f"  case {cc.index}: {{ outcome o = c_exit(); "
                       f"if (write(rep_pipe[{slots[call.proc or 'main']}][1], &o, sizeof o) < 0) _exit(3); _exit(0); }}\n")
        else:
            out.append(f"  case {cc.index}: return {body};\n")
    out.append("  }\n  return ok();\n}\n")
    # the coordinator's side
    out.append(r'''
static void diverge(int n, const char *call, const char *clause, const char *statement, const char *citation,
                    const char *expected, const outcome *o) {
  char b[128]; describe(o, b, sizeof b);
  printf("DIVERGES at call %d: %s\n  clause:   %s\n  spec:     %s\n            [%s]\n  expected: %s\n  observed: %s\n",
         n, call, clause, statement, citation, expected, b);
}
static void finish(void) {
  for (int k = 0; k < NPROC; k++) if (worker_pid[k] > 0) kill(worker_pid[k], SIGKILL);
''')
    for s in shm_names:
        out.append(f'  {{ char real[300]; shm_name({_c_string(s)}, real, sizeof real); shm_unlink(real); }}\n'
                   if not heap else "")
    if not heap:
        out.append("  cleanup_files();\n")
    out.append("  while (wait(0) > 0) {}\n}\n")
    out.append("\nint main(void) {\n  outcome o; u64 A[6]; char b[128];\n  (void)b;\n"
               "  setvbuf(stdout, 0, _IONBF, 0);\n  alarm(120);\n"
               "  for (int k = 0; k < NPROC; k++) if (pipe(req_pipe[k]) < 0 || pipe(rep_pipe[k]) < 0) return 2;\n")
    if heap:
        out.append(f"  limit_memory({_num(int(r.facts.get('mem_limit') or 0))});\n")
    else:
        out.append('  snprintf(shm_prefix, sizeof shm_prefix, "msr%dx-", (int)getpid());\n'
                   '  snprintf(tmpdir, sizeof tmpdir, "/tmp/memspec-repro-XXXXXX");\n'
                   '  if (!mkdtemp(tmpdir)) return 2;\n  chmod(tmpdir, 01777);\n')
    out.append("  start_worker(0);\n")
    env_names: dict[str, int] = {}
    env_so_far: dict[str, int] = {}
    for cc in r.checks:
        call = prog.calls[cc.index]
        proc = call.proc or "main"
        out.append(f"\n  /* call {cc.index + 1}: {cc.text.replace('*/', '* /')} */\n")
        out.append("  memset(A, 0, sizeof A);\n")
        for k, a in enumerate(call.args):
            out.append(f"  A[{k}] = {_arg_c(a)};\n")
        out.append(f"  o = run_in({slots[proc]}, {cc.index}, A);\n")
        size_expr = {"malloc": "A[0]", "calloc": "A[0] * A[1]", "realloc": "A[1]", "aligned_alloc": "A[1]",
                     "memalign": "A[1]", "posix_memalign": "A[1]"}.get(call.name, "1")
        cond = _condition(cc, env_so_far, size_expr)
        out.append(f"  if (!({cond})) {{\n    diverge({cc.index + 1}, {_c_string(cc.text)}, {_c_string(cc.clause)}, "
                   f"{_c_string(cc.statement)},\n            {_c_string(cc.citation)}, {_c_string(cc.expected)}, &o);\n"
                   "    finish();\n    return 1;\n  }\n")
        if heap:
            if call.name in ("malloc", "calloc", "aligned_alloc", "memalign", "posix_memalign"):
                out.append(f"  if (o.value) live_add((u64)o.value, {size_expr});\n")
            elif call.name == "realloc":
                out.append("  if (o.value) { live_del(A[0]); live_add((u64)o.value, A[1]); }"
                           " else if (A[0] && !A[1]) live_del(A[0]);\n")
            elif call.name == "free":
                out.append("  live_del(A[0]);\n")
        if call.result and call.name != "fork":
            out.append(f"  R_{call.result} = (o.kind == K_VALUE) ? o.value : -1;\n")
            if cc.observed is not None:
                env_so_far[call.result] = cc.observed.value if cc.observed.value is not None else -1
        if call.name == "fork" and call.result:
            out.append(f"  worker_pid[{slots[call.result]}] = (pid_t)o.value;\n")
        if call.name == "exit":
            out.append(f"  waitpid(worker_pid[{slots[proc]}], 0, 0); worker_pid[{slots[proc]}] = 0;\n")
        env_names.update(env_so_far)
    f = r.failure
    if f is not None and not any(c.diverges for c in r.checks):
        # memspec's failure is not a call's outcome (the mappings compared at a checkpoint, an
        # invariant): the C file cannot show it, and says so rather than pass silently
        out.append(f'  printf("note: memspec found {f.verdict.value} {f.clause} ({f.at} after call {f.index + 1}), '
                   'which this file does not check\\n");\n')
    out.append('\n  finish();\n  printf("CONFORMS: every call'"'"'s outcome is one the model allows (%d calls)\\n", '
               f"{len(r.checks)});\n  return 0;\n}}\n")
    return "".join(out)


def readme(r: Repro, c_name: str, cmd: str) -> str:
    prog = r.program
    f = r.failure
    lines = [f"# Reproducer: {prog.meta('clause') or (f.clause if f else 'a conforming run')} on {r.target}", ""]
    first = next((c for c in r.checks if c.diverges), None)
    lines += [f"Made by `{cmd}` from this memspec program:", "", "```"]
    lines += [format_call(c) for c in prog.calls] + ["```", ""]
    lines += [f"Seen on: target `{r.target}`, implementation version `{r.version or 'unknown'}`"
              + (f" (kernel {r.facts.get('kernel')})" if r.facts.get("kernel") and r.layer == "os" else "") + ".", ""]
    if first is not None:
        lines += ["## What it shows", "",
                  f"Call {first.index + 1}, `{first.text}`, does not do what the specification allows.", "",
                  f"- clause: `{first.clause}`: {first.statement}",
                  f"- spec: {first.citation}",
                  f"- expected: {first.expected}",
                  f"- observed: {first.observed.describe() if first.observed else '?'}", ""]
    elif f is not None:
        lines += ["## What it shows", "",
                  f"memspec's verdict is `{f.verdict.value}` under `{f.clause}` ({f.expected}; observed {f.observed}), "
                  f"seen {'at a checkpoint' if f.at == 'checkpoint' else 'outside a call'}: the C file replays the "
                  "calls and checks their outcomes, but not the mappings compared at checkpoints.", ""]
    else:
        lines += ["## What it shows", "", "Every call's outcome is one the model allows (memspec's verdict: pass).", ""]
    if r.stopped:
        lines += [f"memspec's target stopped after call {len(r.checks)}: {r.stopped}. The C file checks the "
                  f"{len(r.checks)} calls memspec judged and stops there too.", ""]
    run = f"LD_PRELOAD={r.facts.get('preload')} ./repro" if r.facts.get("preload") else "./repro"
    lines += ["## Build and run", "", "```", f"cc -O2 -o repro {c_name}", run, "```", "",
              "It needs no memspec and no Python. It prints `DIVERGES at call N` with the clause, the spec text, "
              "expected and observed and exits 1, or prints `CONFORMS` and exits 0"
              + (" (run it as root for the calls that need it, as memspec's linux target does)" if r.layer == "os" else "")
              + ".", ""]
    return "\n".join(lines)


def repro(path: str, target_spec: str | None, out: str | None, timeout: float = 10.0) -> tuple[str, Any]:
    """Write the reproducer of ``path`` on ``target_spec`` into ``out``; returns its folder and analysis.
    hw and virt programs (qemu-system, bochs[:MODEL]) get the test kernel with the program built in
    (``repro_hw``); hw programs of control-register writes on kvm a /dev/kvm C file (``repro_kvm``)."""
    from memspec.targets.registry import make_target
    prog = load(path)
    spec = target_spec or prog.meta("target")
    if not spec:
        raise UsageError(f"{path} names no target (no '# target:' line): pass --target T")
    layer = prog.layer
    if layer == "hw" and spec == "kvm":
        from .repro_kvm import repro_kvm
        return repro_kvm(path, out, timeout)
    if layer in ("hw", "virt"):
        from .repro_hw import repro_hw
        return repro_hw(path, spec, out, max(timeout, 20.0))
    names = {c.name for c in prog.calls}
    if layer == "os":
        if spec != "linux":
            raise UsageError(f"repro writes C for the os layer on the linux target, not {spec!r}")
        outside = sorted(names - set(OS_CALLS))
    elif layer == "phys":
        if not (spec == "libc" or spec.startswith("malloc:")):
            raise UsageError(f"repro writes C for the phys layer's malloc family on libc or malloc:NAME, not {spec!r}")
        outside = sorted(names - set(HEAP_CALLS))
    else:
        raise UsageError(f"repro writes C for the os and phys (malloc) layers; {path} is a {layer} program")
    try:
        target = make_target(spec, timeout=timeout)
    except TargetError as e:
        raise UsageError(str(e)) from None
    try:
        lacks = sorted(names - set(target.calls)) if target.calls is not None else []
        if lacks:
            raise UsageError(f"not applicable: {spec} does not implement {', '.join(lacks)}")
        if outside:
            raise UsageError(f"repro has no C form for {', '.join(outside)} yet")
        facts = target.facts()
        r = analyse(prog, target, facts)
    finally:
        target.close()
    if r.verdict.startswith("unsupported"):
        raise UsageError(f"not applicable: {spec} refused the program ({r.verdict})")
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(os.path.basename(path))[0])
    folder = out or os.path.join("memspec-repro", base)
    os.makedirs(folder, exist_ok=True)
    c_name = "repro.c"
    with open(os.path.join(folder, c_name), "w", encoding="utf-8") as fh:
        fh.write(c_source(r))
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as fh:
        fh.write(readme(r, c_name, f"memspec repro {os.path.basename(path)} --target {spec}"))
    return folder, r


__all__ = ["repro", "analyse", "c_source", "readme", "Repro", "CallCheck"]
