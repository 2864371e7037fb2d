"""``memspec repro FILE --target kvm``: one C file that runs a hw program through /dev/kvm as memspec's
kvm target ran it, and checks each call's outcome against the outcomes the model allowed.

The kvm target (targets/kvm/) compiles a program into guest code, guest.S's templates one after
another, each call that can fault or return a value writing its result slot (status, value or RIP,
error code, CR2, RAX: targets/kvm/guest.py), and runs it in chunks with KVM_RUN; ``boot`` is a
KVM_SET_SREGS between chunks.  The reproducer records what the target handed KVM on memspec's run of
the program in a fresh VM: the harness's memory below 1 MiB (GDT, IDT, TSS, exception stubs and
handler, the CPL 3 snippets, the physmap tables) and the harness's root entry, the CPUID table, every
KVM_SET_SREGS (the initial mode, each ``boot``) and every chunk of code with its slots and descriptors.
The C file replays exactly that, and handles the exits as the target does (a read of memory outside
RAM answered with all ones, a write dropped; an instruction KVM's emulator gives up on recorded in
its call's slot and skipped), so the vCPU meets the same code in the same state.

Each call with a slot is checked against patterns made from the outcomes the model allows (the run
replayed through the model call by call, as the judge does): a pattern is the five slot qwords and,
for each, a mask of the bits whose change would make the target's own decoding of the slot
(``targets.kvm.compile._Machine.outcome``) give an outcome the model judges otherwise (the method of
``repro_hw`` for the test kernel).  The first call whose slot matches none is printed with the clause,
its citation, expected and observed (exit 1); a guest that stops (a triple fault, an unexpected
exit, a time limit) is reported as such (exit 3, or 4 for the time limit); every call conforming
exits 0.  Arguments naming earlier results are fixed to memspec's run: the C file stops at the first
divergence, before any of them could differ.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

from memspec.errors import TargetError, UsageError
from memspec.program import Program, eval_args, format_call, load
from memspec.records import Outcome, RunStatus

from .repro_replay import model_replay

U64 = (1 << 64) - 1
# the registers a call writes, read back with KVM_GET_SREGS after a divergence (the effect of a write
# that completed where the model wanted #GP: which of its bits the register holds)
REG_OF = {"mov_cr0": 0, "mov_cr3": 3, "mov_cr4": 4, "wrmsr_efer": 8}
EXIT_STATUS = {"CONFORMS": 0, "DIVERGES": 1, "CRASH": 3, "HANG": 4, "NOT JUDGED": 5}


@dataclass
class SlotPattern:
    values: tuple[int, ...]       # status, value/RIP, error code, CR2, RAX
    masks: tuple[int, ...]


@dataclass
class KvmCheck:
    index: int
    text: str
    clause: str
    statement: str
    citation: str
    expected: str
    observed: Outcome
    diverges: bool
    chunk: int = -1               # the recorded chunk holding its code (-1: decided by the host)
    slot: int = -1
    patterns: list[SlotPattern] | None = None
    reg: int = -1                 # the register a control write sets (REG_*), -1 for other calls
    value: int = 0                # ... the value written
    la: int = -1                  # the linear address an access uses, -1 for other calls


@dataclass
class KvmRepro:
    program: Program
    target: str
    version: str
    checks: list[KvmCheck]
    verdict: str
    failure: Any
    events: list[dict[str, Any]] = field(default_factory=list)
    cpuid: list[list[int]] = field(default_factory=list)
    stopped: str = ""
    disagreements: list[str] = field(default_factory=list)
    finding: str = ""             # the clause the program was saved for (its "# clause:" line)


class _Slot:
    """What ``_Machine.outcome`` reads, with a slot's five qwords given."""

    def __init__(self, raw: tuple[int, ...], code: Any):
        self.raw, self.code = raw, code

    def read_slot(self, _slot: int) -> tuple[int, ...]:
        return self.raw


def _decoder(cc: Any, code: Any) -> Callable[[tuple[int, ...]], Outcome]:
    from memspec.targets.kvm.compile import _Machine
    return lambda raw: _Machine.outcome(_Slot(raw, code), cc)      # type: ignore[arg-type]


def _candidates(cc: Any, code: Any, o: Outcome) -> list[tuple[int, ...]]:
    """Slots that may decode to ``o`` (the shapes of guest.py's result slot)."""
    from memspec.targets.kvm.guest import KCS, ST_EXC, ST_UNEMULATED, UCS, VEC_NAMES
    d = dict(o.detail)
    vec_of = {v: k for k, v in VEC_NAMES.items()}
    out: list[tuple[int, ...]] = []
    css = (UCS, KCS) if cc.kind == "access" and cc.cpl == 3 else (KCS, UCS)
    if o.signal is None and o.errno is None:
        v = o.value or 0
        out += [(0, v, 0, 0, 0), (ST_EXC | 3 | KCS << 16, cc.addr + 1, 0, 0, 0)]
        if cc.kind == "access":
            out += [(ST_EXC | 13 | UCS << 16, code.user_done[cc.op], 0, 0, v), (2, 0, 0, 0, 0), (3, 0, 0, 0, 0)]
    elif o.signal == "#PF":
        out += [(ST_EXC | 14 | cs << 16, 0, int(d.get("errcode", 0)), int(d.get("cr2", 0)), 0) for cs in css]
    elif o.signal == "KVM_EXIT_INTERNAL_ERROR":
        out.append((ST_UNEMULATED, 0, 0, 0, 0))
    elif o.signal in vec_of:
        out += [(ST_EXC | vec_of[o.signal] | cs << 16, 0, 0, 0, 0) for cs in css]
    return out


def _pattern(decode: Callable[[tuple[int, ...]], Outcome], raw: tuple[int, ...],
             ok: Callable[[Outcome], bool]) -> SlotPattern | None:
    if not ok(decode(raw)):
        return None
    masks = []
    for j in range(len(raw)):
        m = 0
        for b in range(64):
            flipped = list(raw)
            flipped[j] ^= 1 << b
            try:
                o2 = decode(tuple(flipped))
            except Exception:
                o2 = None
            if o2 is None or not ok(o2):
                m |= 1 << b
        masks.append(m)
    return SlotPattern(tuple(raw), tuple(masks))


def _patterns(cc: Any, code: Any, exp: Any, raw: tuple[int, ...] | None) -> list[SlotPattern] | None:
    from memspec.model.expect import _same
    if exp.unknown:
        return None
    decode = _decoder(cc, code)
    out: list[SlotPattern] = []

    def add(want: Outcome, ok: Callable[[Outcome], bool]) -> None:
        for cand in ([raw] if raw is not None else []) + _candidates(cc, code, want):
            p = _pattern(decode, cand, ok)
            if p is not None:
                if p not in out:
                    out.append(p)
                return

    if exp.predicate is None:
        for want in (exp.allowed if exp.allowed is not None else (exp.default,)):
            add(want, lambda o, w=want: _same(o, w))
    else:
        add(exp.default, lambda o: exp.judge(o) is None)
    return out


def analyse(program: Program, target: Any, facts: dict[str, Any]) -> KvmRepro:
    """Run ``program`` on the kvm target in a fresh VM, recording what it handed KVM, and replay the
    outcomes through the model to find each call's allowed slots."""
    from memspec.specs.judge import judge
    from memspec.targets.kvm import guest as kg
    from memspec.targets.kvm.guest import SLOT_SIZE, SLOTS
    m = target.machine
    events: list[dict[str, Any]] = []
    orig_chunk, orig_set = m.run_chunk, kg._Vm.set_control

    def run_chunk(chunk: Any) -> Any:
        ev: dict[str, Any] = {"kind": "chunk", "code": bytes(chunk.code) + m.t["halt"].code, "slots": chunk.slots,
                              "desc": list(chunk.descriptors), "calls": list(chunk.calls)}
        events.append(ev)
        res = orig_chunk(chunk)
        ev["status"] = res
        ev["slotdata"] = bytes(m.vm.mem[SLOTS:SLOTS + SLOT_SIZE * max(chunk.slots, 1)]) if m.vm is not None else b""
        return res

    def set_control(vm: Any, cr0: int, cr3: int, cr4: int, efer: int) -> None:
        orig_set(vm, cr0, cr3, cr4, efer)
        events.append({"kind": "sregs", "sregs": bytes(vm.sregs)})

    m.discard()                       # a fresh VM: the harness's memory is guest.py's image
    m.run_chunk = run_chunk
    kg._Vm.set_control = set_control
    try:
        run = target.run(program, observe="end")
    finally:
        del m.run_chunk
        kg._Vm.set_control = orig_set
    if run.status is RunStatus.REFUSED and not run.outcomes:
        raise UsageError(f"not applicable: kvm refused the program ({run.message})")
    j = judge(program, run, target.name, facts)
    where: dict[int, tuple[int, Any]] = {}
    for e, ev in enumerate(events):
        if ev["kind"] == "chunk":
            for cc in ev["calls"]:
                where[cc.index] = (e, cc)
    checks: list[KvmCheck] = []
    disagreements: list[str] = []
    env: dict[str, int] = {}
    for st in model_replay(program, run, facts):
        i, call, o, exp, cid, c = st.index, st.call, st.outcome, st.expect, st.clause_id, st.clause
        chk = KvmCheck(i, format_call(call), cid, c.statement, c.citation, exp.describe, o, st.diverges)
        try:
            args = eval_args(call, env)
        except (KeyError, TypeError):
            args = ()
        if call.name in REG_OF and args and isinstance(args[0], int):
            chk.reg, chk.value = REG_OF[call.name], args[0] & U64
        if call.name in ("access", "vm_access") and args and isinstance(args[0], int):
            chk.la = args[0] & U64
        if call.result and o.value is not None:
            env[call.result] = o.value
        e, cc = where.get(i, (-1, None))
        if cc is not None and cc.kind in ("value", "access", "fault"):
            data = events[e]["slotdata"]
            raw = struct.unpack_from("<5Q", data, SLOT_SIZE * cc.slot) if len(data) >= SLOT_SIZE * (cc.slot + 1) else None
            chk.chunk, chk.slot = e, cc.slot
            chk.patterns = _patterns(cc, m.code, exp, raw)
            if raw is not None and chk.patterns is not None:
                hit = any(all(not ((a ^ v) & mk) for a, v, mk in zip(raw, p.values, p.masks)) for p in chk.patterns)
                if hit != (not st.diverges):
                    disagreements.append(f"call {i + 1}: slot {[hex(x) for x in raw]} "
                                         f"{'matches' if hit else 'matches no pattern'} but memspec's verdict is "
                                         f"{'a divergence' if st.diverges else 'allowed'}")
        checks.append(chk)
    f = j.failure
    verdict = "pass" if f is None else f.verdict.value
    stopped = run.message if run.status is not RunStatus.OK else ""
    return KvmRepro(program, target.name, str(facts.get("impl_version", "")), checks, verdict, f, events,
                    [list(e) for e in m.cpuid], stopped, disagreements, program.meta("clause") or "")


# --- the C file ----------------------------------------------------------------------------------

def _c(s: str) -> str:
    return '"' + "".join(c if c.isprintable() and c not in '"\\?' else f"\\{ord(c) & 0xFF:03o}" for c in s) + '"'


def _bytes(b: bytes) -> str:
    rows = [", ".join(f"0x{x:02x}" for x in b[k:k + 24]) for k in range(0, len(b), 24)]
    return "{\n  " + ",\n  ".join(rows) + "\n}" if rows else "{0}"


_HEAD = r'''/* A standalone reproducer written by `memspec repro --target kvm`: C99, libc and the kernel's uapi
 * headers.  Build: cc -O2 -o repro repro.c    Run: ./repro (needs /dev/kvm).
 * Exit 0: every call conforms; 1: a divergence (printed with the clause); 3: the guest stopped (a
 * triple fault, an unexpected exit); 4: it ran past the time limit; 5: it reached code memspec does
 * not judge; 2: the VM could not be set up.
 *
 * What it replays is what memspec's kvm target handed KVM for this program (targets/kvm/ in
 * memspec): the harness's memory below 1 MiB, the CPUID table, each KVM_SET_SREGS and each chunk of
 * guest code.  Each call that can fault or return a value writes a result slot of five qwords
 * (status, value or RIP, error code, CR2, RAX); each is compared, under masks, with the slots that
 * give an outcome the model allows. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

struct pat { uint64_t v[5], m[5]; };
struct check { int call, chunk, slot, npat;       /* npat -1: the model cannot decide, any slot */
               const struct pat *pats;
               const char *text, *clause, *statement, *citation, *expected;
               int reg; uint64_t value;          /* a control write: CR0/3/4 or EFER (8), -1: none */
               int has_la; uint64_t la; };       /* an access: its linear address */
struct ccall { int call, slot, guarded, is_exec; uint64_t start, end, addr; };   /* calls with code */
struct event { const uint8_t *sregs; const uint8_t *code; unsigned len; int nslots;
               int ndesc; const uint64_t (*desc)[3]; int ncalls; const struct ccall *calls; };
'''

_MAIN = r'''
static void die(const char *what) { fprintf(stderr, "repro: %s: %s\n", what, strerror(errno)); exit(2); }
static void on_alarm(int sig) { (void)sig; }

static int vcpu;
static void set_regs(uint64_t rip, uint64_t r14, uint64_t r15) {
  struct kvm_regs regs;
  memset(&regs, 0, sizeof regs);
  regs.rflags = 2; regs.rsp = KTOP; regs.rip = rip; regs.r14 = r14; regs.r15 = r15;
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
}

static const char *describe(const uint64_t *s, char *b, size_t n) {
  char what[96];
  uint64_t st = s[0];
  if (st & ST_EXC) snprintf(what, sizeof what, "exception vector %llu, CS %#llx", (unsigned long long)(st & 0xff),
                            (unsigned long long)(st >> 16));
  else if (st == ST_UNEMULATED) snprintf(what, sizeof what, "KVM_EXIT_INTERNAL_ERROR: KVM could not emulate the instruction");
  else if (st == ST_FETCHED) snprintf(what, sizeof what, "the fetch passed its checks, what it fetched was not emulated");
  else snprintf(what, sizeof what, "completed");
  snprintf(b, n, "%s (slot status=%#llx value/rip=%#llx errcode=%#llx cr2=%#llx rax=%#llx)", what,
           (unsigned long long)s[0], (unsigned long long)s[1], (unsigned long long)s[2],
           (unsigned long long)s[3], (unsigned long long)s[4]);
  return b;
}

/* ---- the finding's effect, read after the divergence ----------------------------------------- */
static int kmsg = -1;
static void kmsg_open(void) {             /* the kernel log from now on (root: /dev/kmsg) */
  kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (kmsg >= 0) lseek(kmsg, 0, SEEK_END);
}
static void kmsg_print(void) {            /* KVM's lines the kernel logged while the guest ran */
  if (kmsg < 0) { printf("  kernel log: not readable (/dev/kmsg needs root)\n"); return; }
  char rec[1024];
  int any = 0;
  for (;;) {
    ssize_t n = read(kmsg, rec, sizeof rec - 1);
    if (n < 0 && errno == EPIPE) continue;          /* records overwritten: go on with the next */
    if (n <= 0) break;
    rec[n] = 0;
    char *msg = strchr(rec, ';');
    msg = msg ? msg + 1 : rec;
    if (!strstr(msg, "kvm") && !strstr(msg, "KVM")) continue;
    msg[strcspn(msg, "\n")] = 0;
    printf("  kernel log: %s\n", msg);
    any = 1;
  }
  if (!any) printf("  kernel log: no line from KVM while the guest ran\n");
}
static void print_walk(const uint8_t *mem, uint64_t cr3, int la57, uint64_t la) {
  static const char *name[] = {"PTE", "PDE", "PDPTE", "PML4E", "PML5E"};
  uint64_t table = cr3 & 0x000ffffffffff000ULL;
  for (int level = la57 ? 5 : 4; level >= 1; level--) {
    uint64_t pa = table + 8 * ((la >> (12 + 9 * (level - 1))) & 511);
    if (pa + 8 > RAM) { printf("  %-5s at %#llx: outside the guest's RAM\n", name[level - 1], (unsigned long long)pa); return; }
    uint64_t e;
    memcpy(&e, mem + pa, 8);
    printf("  %-5s at %#llx = %#018llx%s%s%s%s%s%s%s\n", name[level - 1], (unsigned long long)pa, (unsigned long long)e,
           e & 1 ? " P" : " not-present", e & 2 ? " RW" : "", e & 4 ? " US" : "", e & 0x20 ? " A" : "",
           e & 0x40 ? " D" : "", (e & 0x80) && level > 1 && level < 4 ? " PS" : "", e >> 63 ? " XD" : "");
    if (!(e & 1) || ((e & 0x80) && level > 1 && level < 4)) return;
    table = e & 0x000ffffffffff000ULL;
  }
}
/* after the chunk that holds the divergent call: the registers, the tables of its walk, the data */
static void effect(const struct check *c, const uint64_t *s, const uint8_t *mem) {
  struct kvm_sregs sr;
  if (ioctl(vcpu, KVM_GET_SREGS, &sr) < 0) { printf("  (KVM_GET_SREGS: %s)\n", strerror(errno)); return; }
  printf("effect (read after the guest code of call %d's chunk ran):\n", c->call + 1);
  printf("  CR0 = %#llx, CR3 = %#llx, CR4 = %#llx, EFER = %#llx\n", (unsigned long long)sr.cr0,
         (unsigned long long)sr.cr3, (unsigned long long)sr.cr4, (unsigned long long)sr.efer);
  if (c->reg >= 0) {
    uint64_t now = c->reg == 0 ? sr.cr0 : c->reg == 3 ? sr.cr3 : c->reg == 4 ? sr.cr4 : sr.efer;
    const char *r = c->reg == 0 ? "CR0" : c->reg == 3 ? "CR3" : c->reg == 4 ? "CR4" : "EFER";
    if (c->reg == 8) now &= ~(uint64_t)0x400;       /* LMA: set by the CPU, not by the write */
    if (c->reg == 0) now = (now & ~(uint64_t)0x10) | (c->value & 0x10);   /* ET: fixed at 1 */
    if (now == c->value) printf("  the write took effect: %s = %#llx\n", r, (unsigned long long)now);
    else printf("  %s reads back %#llx: the write of %#llx did not take effect as written (bits %#llx differ)\n",
                r, (unsigned long long)now, (unsigned long long)c->value, (unsigned long long)(now ^ c->value));
  }
  if (c->has_la) {
    printf("  the walk of %#llx in guest memory:\n", (unsigned long long)c->la);
    print_walk(mem, sr.cr3, (sr.cr4 >> 12) & 1, c->la);
    uint64_t data = (s[0] & ST_EXC) ? s[4] : s[1];
    if (!(s[0] & ST_EXC) || (s[0] & 0xff) == 13)
      if ((data & 0xff) == 0xcc) printf("  the load read %#llx: the qword at physical %#llx (memory holds (pa << 8) | 0xCC)\n",
                                       (unsigned long long)data, (unsigned long long)(data >> 8));
  }
  kmsg_print();
}
static int finish(const char *clause) {   /* the finding's line; clause 0: every call conformed */
  if (!FINDING[0]) return 0;
  if (clause && (!strcmp(clause, FINDING) || !strcmp(clause, BLAMED))) printf("REPRODUCED: %s\n", FINDING);
  else if (clause) printf("NOT REPRODUCED: the finding is %s; this run diverges under %s\n", FINDING, clause);
  else printf("NOT REPRODUCED: %s (every call conforms)\n", FINDING);
  return 0;
}

/* the call of ev whose code the vCPU was in (rip, else r15 - 1), as the target's _where */
static int where(const struct event *ev, uint64_t rip, uint64_t r15) {
  uint64_t at[2] = {rip, r15 - 1};
  for (int k = 0; k < 2; k++) {
    uint64_t off = at[k] - PHYS;
    int found = -1;
    if (off < CODE || off >= CODE + ev->len) continue;
    for (int c = 0; c < ev->ncalls; c++) if (ev->calls[c].start <= off) found = ev->calls[c].call;
    if (found >= 0) return found;
  }
  return -1;
}

int main(void) {
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("open /dev/kvm");
  if (ioctl(kvm, KVM_GET_API_VERSION, 0) != 12) { fprintf(stderr, "repro: KVM API is not 12\n"); return 2; }
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  uint8_t *mem = mmap(0, RAM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  /* the pattern above 1 MiB: the qword at pa reads (pa << 8) | 0xCC; the harness's memory below */
  for (uint64_t pa = LOW; pa < RAM; pa += 8) *(uint64_t *)(mem + pa) = (pa << 8) | 0xCC;
  for (unsigned k = 0; k < sizeof HARNESS / sizeof HARNESS[0]; k++) *(uint64_t *)(mem + HARNESS[k][0]) = HARNESS[k][1];
  struct kvm_userspace_memory_region region = { .slot = 0, .guest_phys_addr = 0, .memory_size = RAM,
                                                .userspace_addr = (uint64_t)(uintptr_t)mem };
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
  vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  int n = sizeof CPUID / sizeof CPUID[0];
  struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + n * sizeof(struct kvm_cpuid_entry2));
  cpuid->nent = n;
  for (int i = 0; i < n; i++) {
    struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
    e->function = CPUID[i][0]; e->index = CPUID[i][1]; e->flags = CPUID[i][2];
    e->eax = CPUID[i][3]; e->ebx = CPUID[i][4]; e->ecx = CPUID[i][5]; e->edx = CPUID[i][6];
  }
  if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0) die("KVM_SET_CPUID2");
  int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run *run = mmap(0, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap kvm_run");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;                 /* no SA_RESTART: KVM_RUN returns EINTR */
  sigaction(SIGALRM, &sa, 0);
  kmsg_open();
  int next = 0;                             /* the next check */
  char b[200];
  for (int e = 0; e < NEVENTS; e++) {
    const struct event *ev = &EVENTS[e];
    if (ev->sregs) {
      struct kvm_sregs sregs;
      memcpy(&sregs, ev->sregs, sizeof sregs);
      if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
      continue;
    }
    memcpy(mem + CODE, ev->code, ev->len);
    memset(mem + SLOTS, 0, SLOT_SIZE * (ev->nslots > 0 ? ev->nslots : 1));
    for (int d = 0; d < ev->ndesc; d++) {
      memcpy(mem + ev->desc[d][0], &ev->desc[d][1], 8);
      memcpy(mem + ev->desc[d][0] + 8, &ev->desc[d][2], 8);
    }
    set_regs(PHYS + CODE, PHYS + SCRATCH, FATAL);
    const char *stop = 0, *verdict = "CRASH";
    int code = 3, resumes = 0, limit = 64 * (ev->nslots + 1);
    struct kvm_regs regs;
    for (;;) {
      alarm(TIME_LIMIT);
      int rc = ioctl(vcpu, KVM_RUN, 0);
      alarm(0);
      if (rc < 0 && errno == EINTR) { stop = "the guest did not halt within the time limit"; verdict = "HANG"; code = 4; break; }
      if (rc < 0) die("KVM_RUN");
      if (run->exit_reason == KVM_EXIT_MMIO && resumes < limit) {
        /* guest-physical memory outside RAM: a read returns all ones, a write is dropped */
        if (!run->mmio.is_write) memset(run->mmio.data, 0xff, 8);
        resumes++;
        continue;
      }
      if (ioctl(vcpu, KVM_GET_REGS, &regs) < 0) die("KVM_GET_REGS");
      if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR && resumes <= limit && run->internal.suberror == 1 &&
          (regs.r14 - PHYS - SLOTS) % SLOT_SIZE == 0) {
        /* KVM's emulator gave up on the call's instruction: its outcome, then the next call */
        int slot = (int)((regs.r14 - PHYS - SLOTS) / SLOT_SIZE);
        const struct ccall *c = 0;
        for (int k = 0; k < ev->ncalls; k++) if (ev->calls[k].guarded && ev->calls[k].slot == slot) c = &ev->calls[k];
        uint64_t status = 0;
        if (c && c->is_exec && regs.rip == c->addr) status = ST_FETCHED;
        else if (c && PHYS + c->start <= regs.rip && regs.rip < PHYS + c->end) status = ST_UNEMULATED;
        if (status) {
          uint64_t *s = (uint64_t *)(mem + SLOTS + SLOT_SIZE * slot);
          s[0] = status; s[1] = regs.rip;
          set_regs(regs.r15, regs.r14, regs.r15);
          resumes++;
          continue;
        }
      }
      if (run->exit_reason == KVM_EXIT_HLT && regs.rip == PHYS + CODE + ev->len) break;
      if (run->exit_reason == KVM_EXIT_HLT) {
        int slot = (int)((regs.r14 - PHYS - SLOTS) / SLOT_SIZE);
        int exec = 0;
        for (int k = 0; k < ev->ncalls; k++) if (ev->calls[k].guarded && ev->calls[k].slot == slot && ev->calls[k].is_exec) exec = 1;
        if (exec && regs.rip != FATAL + 1) {
          stop = "a fetch ran code outside the pattern, which halted (memspec does not judge it)";
          verdict = "NOT JUDGED"; code = 5;
        } else {
          stop = "the guest halted before the end of its code";
        }
      } else if (run->exit_reason == KVM_EXIT_SHUTDOWN) {
        stop = "KVM_EXIT_SHUTDOWN: the guest triple-faulted";
      } else if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR) {
        stop = "KVM_EXIT_INTERNAL_ERROR";
      } else {
        stop = "an unexpected VM exit";
      }
      break;
    }
    int at = stop ? where(ev, regs.rip, regs.r15) : -1;
    for (; next < NCHECKS && CHECKS[next].chunk <= e; next++) {
      const struct check *c = &CHECKS[next];
      if (c->chunk < e) continue;
      if (stop && (at < 0 || c->call >= at)) break;
      const uint64_t *s = (const uint64_t *)(mem + SLOTS + SLOT_SIZE * c->slot);
      int ok = c->npat < 0;
      for (int p = 0; p < c->npat && !ok; p++) {
        int all = 1;
        for (int f = 0; f < 5; f++) all &= !((s[f] ^ c->pats[p].v[f]) & c->pats[p].m[f]);
        ok = all;
      }
      if (ok) continue;
      printf("DIVERGES at call %d: %s\n  clause:   %s\n  spec:     %s\n            [%s]\n  expected: %s\n"
             "  observed: %s\n", c->call + 1, c->text, c->clause, c->statement, c->citation, c->expected,
             describe(s, b, sizeof b));
      effect(c, s, mem);
      finish(c->clause);
      printf("VERDICT: DIVERGES (%s)\n", c->clause);
      return 1;
    }
    if (stop) {
      printf("the guest stopped%s%d: %s\n", at >= 0 ? " at call " : "", at >= 0 ? at + 1 : 0, stop);
      kmsg_print();
      finish("memspec.target.alive");
      printf("VERDICT: %s\n", verdict);
      return code;
    }
  }
  finish(0);
  printf("VERDICT: CONFORMS (every call's outcome is one the model allows; %d checked)\n", NCHECKS);
  return 0;
}
'''


def c_source(r: KvmRepro) -> str:
    from memspec.calls_hw import HARNESS_LOW, HARNESS_SLOT, INITIAL_CR3, RAM_SIZE
    from memspec.targets.kvm.guest import (
        CODE, KTOP, PHYS, SCRATCH, SLOT_SIZE, SLOTS, ST_EXC, ST_FETCHED, ST_UNEMULATED, _image, code)
    img = _image()
    harness = [(pa, struct.unpack_from("<Q", img, pa)[0]) for pa in range(0, HARNESS_LOW, 8)]
    harness = [(pa, v) for pa, v in harness if v]
    root511 = INITIAL_CR3 + 8 * HARNESS_SLOT
    harness.append((root511, struct.unpack_from("<Q", img, root511)[0]))
    out = [_HEAD]
    out.append(f"#define PHYS {PHYS:#x}ULL\n#define CODE {CODE:#x}ULL\n#define SLOTS {SLOTS:#x}ULL\n"
               f"#define SLOT_SIZE {SLOT_SIZE}\n#define KTOP {KTOP:#x}ULL\n#define SCRATCH {SCRATCH:#x}ULL\n"
               f"#define FATAL {code().fatal:#x}ULL\n#define RAM {RAM_SIZE:#x}ULL\n#define LOW {HARNESS_LOW:#x}ULL\n"
               f"#define ST_FETCHED {ST_FETCHED}\n#define ST_UNEMULATED {ST_UNEMULATED}\n#define ST_EXC {ST_EXC}\n"
               f"#define TIME_LIMIT 10\n"
               f"/* the clause the program was saved for: REPRODUCED when the first divergence is under it, or\n"
               f" * under the clause memspec blamed for the same failure when it wrote this file */\n"
               f"static const char FINDING[] = {_c(r.finding)};\n"
               f"static const char BLAMED[] = {_c(r.failure.clause if r.failure is not None else '')};\n")
    out.append("/* the harness's memory as memspec's kvm target writes it (targets/kvm/guest.py, _build_harness):\n"
               " * GDT, IDT, TSS, exception stubs and handler, CPL 3 snippets, physmap tables; root[511] */")
    out.append("static const uint64_t HARNESS[][2] = {\n" +
               "\n".join(f"  {{{pa:#x}, {v:#x}ULL}}," for pa, v in harness) + "\n};")
    out.append("/* the CPUID table given to KVM_SET_CPUID2: function, index, flags, eax, ebx, ecx, edx */")
    out.append("static const uint32_t CPUID[][7] = {\n" +
               "\n".join("  {" + ", ".join(f"{x:#x}" for x in e) + "}," for e in r.cpuid) + "\n};")
    ev_rows = []
    for e, ev in enumerate(r.events):
        if ev["kind"] == "sregs":
            out.append(f"static const uint8_t SREGS_{e}[] = {_bytes(ev['sregs'])};")
            ev_rows.append(f"  {{SREGS_{e}, 0, 0, 0, 0, 0, 0, 0}},")
            continue
        out.append(f"/* chunk {e}: guest code at CODE (calls {', '.join(str(cc.index + 1) for cc in ev['calls'])}) */")
        out.append(f"static const uint8_t CODE_{e}[] = {_bytes(ev['code'])};")
        desc = ev["desc"]
        if desc:
            out.append(f"static const uint64_t DESC_{e}[][3] = {{" + ", ".join(
                f"{{{pa:#x}, {struct.unpack_from('<Q', d)[0]:#x}ULL, {struct.unpack_from('<Q', d, 8)[0]:#x}ULL}}"
                for pa, d in desc) + "};")
        calls = [cc for cc in ev["calls"] if cc.kind != "const"]
        if calls:
            out.append(f"static const struct ccall CALLS_{e}[] = {{" + ", ".join(
                f"{{{cc.index}, {cc.slot}, {int(cc.kind in ('access', 'fault'))}, {int(cc.kind == 'access' and cc.op == 2)}, "
                f"{cc.start:#x}, {cc.end:#x}, {cc.addr & U64:#x}ULL}}" for cc in calls) + "};")
        ev_rows.append(f"  {{0, CODE_{e}, {len(ev['code'])}, {ev['slots']}, {len(desc)}, {f'DESC_{e}' if desc else '0'}, "
                       f"{len(calls)}, {f'CALLS_{e}' if calls else '0'}}},")
    out.append(f"#define NEVENTS {len(ev_rows)}\nstatic const struct event EVENTS[] = {{\n" + "\n".join(ev_rows) + "\n};")
    rows = []
    for k, c in enumerate(x for x in r.checks if x.chunk >= 0):
        if c.patterns:
            out.append(f"static const struct pat PATS_{k}[] = {{" + ", ".join(
                "{{" + ", ".join(f"{v:#x}ULL" for v in p.values) + "}, {" + ", ".join(f"{m:#x}ULL" for m in p.masks) + "}}"
                for p in c.patterns) + "};")
        npat = -1 if c.patterns is None else len(c.patterns)
        rows.append(f"  {{{c.index}, {c.chunk}, {c.slot}, {npat}, {f'PATS_{k}' if c.patterns else '0'},\n"
                    f"   {_c(c.text)}, {_c(c.clause)},\n   {_c(c.statement)},\n   {_c(c.citation)}, {_c(c.expected)},\n"
                    f"   {c.reg}, {c.value:#x}ULL, {int(c.la >= 0)}, {max(c.la, 0):#x}ULL}},")
    out.append(f"#define NCHECKS {len(rows)}\nstatic const struct check CHECKS[] = {{\n" + "\n".join(rows or ["  {0}"]) + "\n};")
    return "\n".join(out) + "\n" + _MAIN


def readme(r: KvmRepro, cmd: str) -> str:
    first = next((c for c in r.checks if c.diverges), None)
    lines = [f"# Reproducer: {first.clause if first else 'a conforming run' if r.verdict == 'pass' else r.verdict} "
             f"on {r.target}", "", f"Made by `{cmd}` from this memspec program:", "", "```"]
    lines += [format_call(c) for c in r.program.calls] + ["```", "",
              f"Seen on: target `{r.target}`, version `{r.version or 'unknown'}`.", "", "## What it shows", ""]
    if first is not None:
        lines += [f"Call {first.index + 1}, `{first.text}`, does not do what the specification allows.", "",
                  f"- clause: `{first.clause}`: {first.statement}", f"- spec: {first.citation}",
                  f"- expected: {first.expected}", f"- observed: {first.observed.describe()}", ""]
        if first.chunk < 0:
            lines += ["The outcome of this call is decided by memspec's harness, not read from the guest: the C "
                      "file checks the calls before it only.", ""]
    elif r.failure is not None:
        lines += [f"memspec's verdict is `{r.failure.verdict.value}`: {r.stopped or r.failure.clause}.", ""]
    else:
        lines += ["Every call's outcome is one the model allows (memspec's verdict: pass).", ""]
    lines += ["## Build and run", "", "```", "cc -O2 -o repro repro.c", "./repro", "```", "",
              "It needs /dev/kvm and no memspec or Python. It replays the guest code memspec's kvm target ran "
              "(the harness's memory, the CPUID table, each KVM_SET_SREGS, each chunk of code) and compares each "
              "call's result slot with the slots the model allows. It prints `DIVERGES at call N` with the "
              "clause, the spec, expected and observed and `VERDICT: DIVERGES (clause)` and exits 1, or "
              "`VERDICT: CONFORMS` and exits 0; a guest that stops prints `VERDICT: CRASH` (exit 3) or "
              "`VERDICT: HANG` (exit 4); 2: the VM could not be set up. After a divergence it prints the "
              "effect: the control registers (and, for a control-register write, which bits of the value "
              "written the register holds), the walk of an access's address in guest memory with each entry's "
              "bits, the data a load read, and KVM's lines in the kernel log (/dev/kmsg, as root) while the "
              "guest ran."]
    if r.finding:
        lines += ["", f"The program was saved for `{r.finding}`: the line before the verdict is `REPRODUCED: {r.finding}` when "
                  "the first divergence is under it"
                  + (f" (or under `{r.failure.clause}`, the clause memspec blames for it today)"
                     if r.failure is not None and r.failure.clause != r.finding else "")
                  + ", else `NOT REPRODUCED: ...`."]
    lines += [""]
    return "\n".join(lines)


def repro_kvm(path: str, out: str | None, timeout: float = 10.0, target: Any = None) -> tuple[str, KvmRepro]:
    """Write the /dev/kvm C reproducer of the hw program ``path`` into ``out``; ``target``: a running
    kvm target to use (left running), else one is started and closed."""
    from memspec.targets.registry import make_target
    prog = load(path)
    if prog.layer != "hw":
        raise UsageError(f"repro writes /dev/kvm C for hw programs; {path} is a {prog.layer} program")
    own = target is None
    if own:
        try:
            target = make_target("kvm", timeout=timeout)
        except TargetError as e:
            raise UsageError(str(e)) from None
    try:
        lacks = sorted({c.name for c in prog.calls} - set(target.calls or ()))
        if lacks:
            raise UsageError(f"not applicable: kvm does not implement {', '.join(lacks)}")
        facts = target.facts()
        r = analyse(prog, target, facts)
    finally:
        if own:
            target.close()
    src = c_source(r)
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(os.path.basename(path))[0])
    folder = out or os.path.join("memspec-repro", base)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "repro.c"), "w", encoding="utf-8") as fh:
        fh.write(src)
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as fh:
        fh.write(readme(r, f"memspec repro {os.path.basename(path)} --target kvm"))
    return folder, r


__all__ = ["repro_kvm", "analyse", "c_source", "KvmRepro", "KvmCheck", "EXIT_STATUS"]
