/* A standalone reproducer written by `memspec repro`: C99 and the C library only.
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
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <malloc.h>
#include <sys/reboot.h>

/* run as the first process of a Linux (User-mode Linux: init=repro), the end of the file is the
 * end of the machine: power it off rather than exit (an init that exits panics the kernel) */
static void power_off_if_init(void) {
  if (getpid() == 1) { fflush(stdout); sync(); reboot(RB_POWER_OFF); }
}

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
