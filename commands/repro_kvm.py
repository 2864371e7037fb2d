"""``memspec repro FILE --target kvm``: one C file that runs the program's control-register writes
in a VM through /dev/kvm and checks each outcome the model allowed.

The generalisation of the hand-written docs/findings/repro/kvm-mov-cr0-high-bits.c to programs made
of ``mov_cr0``, ``mov_cr4`` and ``wrmsr_efer``: one vCPU put straight into the mode every hw program
starts in (CR0 = PG|WP|PE, CR4 = PAE, EFER = LME|LMA|NXE, identity-mapped 2 MiB page), the writes in
one guest code sequence, each followed by a store of 1 to its result byte.  The #GP handler stores
0x0d there and resumes at the next write (a table of resume addresses); any other exception stores
0x80 | vector and halts.  Each write's result is compared with the outcomes the model allowed on
memspec's run (``repro.analyse``: the run replayed through the model), and the first that is none
of them is printed with the clause and its citation (exit 1; 0 when every write conforms).  Other
hw calls (the page-table writes and accesses) have no C form here yet.
"""

from __future__ import annotations

import os
import re
from typing import Any

from memspec.errors import TargetError, UsageError
from memspec.program import format_call, load
from memspec.records import Outcome

CALLS = {"mov_cr0": 0, "mov_cr4": 1, "wrmsr_efer": 2}
VECTORS = {"#DE": 0, "#UD": 6, "#DF": 8, "#SS": 12, "#GP": 13, "#PF": 14}


def _code(o: Outcome) -> int | None:
    """The result byte the guest stores for outcome ``o`` (None: not observable this way)."""
    if o.value is None and o.errno is None and o.signal is None and not o.detail:
        return 1
    if o.signal == "#GP" and o.value is None and o.errno is None:
        return 0x0D
    if o.signal in VECTORS and o.signal != "#PF" and o.value is None:
        return 0x80 | VECTORS[o.signal]
    return None


def _c(s: str) -> str:
    return '"' + "".join(c if c.isprintable() and c not in '"\\?' else f"\\{ord(c) & 0xFF:03o}" for c in s) + '"'


_MAIN = r'''
static void die(const char *what) { fprintf(stderr, "repro: %s: %s\n", what, strerror(errno)); exit(2); }

static void idt_gate(uint8_t *mem, int vec, uint64_t handler) {
  uint8_t *e = mem + 0x600 + 16 * vec;
  memset(e, 0, 16);
  e[0] = handler & 0xff; e[1] = (handler >> 8) & 0xff;
  e[2] = 0x08;                       /* code segment selector */
  e[5] = 0x8e;                       /* present, DPL 0, 64-bit interrupt gate */
  e[6] = (handler >> 16) & 0xff; e[7] = (handler >> 24) & 0xff;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, int code) {
  memset(s, 0, sizeof *s);
  s->base = 0; s->limit = 0xffffffff; s->selector = sel; s->type = type; s->present = 1;
  s->dpl = 0; s->s = 1; s->g = 1; s->l = code; s->db = !code;
}

static uint8_t *emit(uint8_t *p, const uint8_t *b, size_t n) { memcpy(p, b, n); return p + n; }
static uint8_t *emit32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); return p + 4; }
static uint8_t *emit64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); return p + 8; }

#define MEM (2u << 20)
#define STEP 0x5000          /* the write running now (qword) */
#define RES 0x5100           /* one result byte per write: 1 done, 0x0d #GP, 0x80|v another vector */
#define RESUME 0x6000        /* where the #GP handler resumes after write i */

static const char *describe(int r, char *b, size_t n) {
  if (r == 1) snprintf(b, n, "ok (the write completed)");
  else if (r == 0x0d) snprintf(b, n, "#GP");
  else if (r & 0x80) snprintf(b, n, "exception vector %d", r & 0x7f);
  else snprintf(b, n, "not reached (the guest stopped before it)");
  return b;
}

int main(void) {
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("open /dev/kvm");
  if (ioctl(kvm, KVM_GET_API_VERSION, 0) != 12) { fprintf(stderr, "repro: KVM API is not 12\n"); return 2; }
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  uint8_t *mem = mmap(0, MEM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  struct kvm_userspace_memory_region region = { .slot = 0, .guest_phys_addr = 0, .memory_size = MEM,
                                                .userspace_addr = (uint64_t)(uintptr_t)mem };
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
  /* page tables: PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> one 2 MiB page at 0 */
  uint64_t *pml4 = (uint64_t *)(mem + 0x1000), *pdpt = (uint64_t *)(mem + 0x2000), *pd = (uint64_t *)(mem + 0x3000);
  pml4[0] = 0x2000 | 3; pdpt[0] = 0x3000 | 3; pd[0] = 0 | 0x83;
  uint64_t *gdt = (uint64_t *)(mem + 0x500);
  gdt[0] = 0; gdt[1] = 0x00af9a000000ffffULL; gdt[2] = 0x00cf92000000ffffULL;
  /* any vector but #GP: RES[STEP] = 0x80 | vector, halt (one stub per vector at 0x8000 + 32 v) */
  for (int v = 0; v < 32; v++) {
    uint8_t *p = mem + 0x8000 + 32 * v;
    static const uint8_t step[] = {0x48, 0x8b, 0x04, 0x25};            /* mov rax, [STEP] */
    p = emit(p, step, 4); p = emit32(p, STEP);
    static const uint8_t st[] = {0xc6, 0x80};                          /* mov byte [rax + RES], imm8 */
    p = emit(p, st, 2); p = emit32(p, RES); *p++ = (uint8_t)(0x80 | v);
    *p++ = 0xf4;                                                       /* hlt */
    idt_gate(mem, v, 0x8000 + 32 * v);
  }
  { /* #GP: RES[STEP] = 0x0d, then resume at RESUME[STEP] */
    uint8_t *p = mem + 0x8800;
    static const uint8_t step[] = {0x48, 0x8b, 0x04, 0x25};
    p = emit(p, step, 4); p = emit32(p, STEP);
    static const uint8_t st[] = {0xc6, 0x80};
    p = emit(p, st, 2); p = emit32(p, RES); *p++ = 0x0d;
    static const uint8_t ld[] = {0x48, 0x8b, 0x04, 0xc5};              /* mov rax, [rax*8 + RESUME] */
    p = emit(p, ld, 4); p = emit32(p, RESUME);
    static const uint8_t tail[] = {0x48, 0x83, 0xc4, 0x08,             /* add rsp, 8 (the error code) */
                                   0x48, 0x89, 0x04, 0x24,             /* mov [rsp], rax */
                                   0x48, 0xcf};                        /* iretq */
    p = emit(p, tail, sizeof tail);
    idt_gate(mem, 13, 0x8800);
  }
  /* the program: for each write, STEP = i; the write; RES[i] = 1 */
  uint8_t *p = mem + 0x10000;
  for (int i = 0; i < NSTEPS; i++) {
    static const uint8_t setstep[] = {0x48, 0xc7, 0x04, 0x25};         /* mov qword [STEP], imm32 */
    p = emit(p, setstep, 4); p = emit32(p, STEP); p = emit32(p, (uint32_t)i);
    static const uint8_t movabs[] = {0x48, 0xb8};                      /* mov rax, imm64 */
    p = emit(p, movabs, 2); p = emit64(p, STEPS[i].value);
    if (STEPS[i].kind == 0) { static const uint8_t b[] = {0x0f, 0x22, 0xc0}; p = emit(p, b, 3); }   /* mov cr0, rax */
    else if (STEPS[i].kind == 1) { static const uint8_t b[] = {0x0f, 0x22, 0xe0}; p = emit(p, b, 3); } /* mov cr4, rax */
    else {
      static const uint8_t b[] = {0xb9, 0x80, 0x00, 0x00, 0xc0,        /* mov ecx, 0xc0000080 (IA32_EFER) */
                                  0x48, 0x89, 0xc2, 0x48, 0xc1, 0xea, 0x20,   /* mov rdx, rax; shr rdx, 32 */
                                  0x0f, 0x30};                         /* wrmsr */
      p = emit(p, b, sizeof b);
    }
    static const uint8_t done[] = {0xc6, 0x04, 0x25};                  /* mov byte [RES + i], 1 */
    p = emit(p, done, 3); p = emit32(p, RES + i); *p++ = 1;
    ((uint64_t *)(mem + RESUME))[i] = (uint64_t)(p - mem);
  }
  *p++ = 0xf4;

  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  int n = 256;
  struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + n * sizeof(struct kvm_cpuid_entry2));
  cpuid->nent = n;
  if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
  if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0) die("KVM_SET_CPUID2");
  int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run *run = mmap(0, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap kvm_run");
  struct kvm_sregs sregs;
  if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  seg(&sregs.cs, 0x08, 11, 1);
  seg(&sregs.ds, 0x10, 3, 0); sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
  memset(&sregs.tr, 0, sizeof sregs.tr);
  sregs.tr.limit = 0x67; sregs.tr.type = 11; sregs.tr.present = 1; sregs.tr.selector = 0x18;
  sregs.gdt.base = 0x500; sregs.gdt.limit = 23;
  sregs.idt.base = 0x600; sregs.idt.limit = 32 * 16 - 1;
  sregs.cr0 = INIT_CR0; sregs.cr3 = 0x1000; sregs.cr4 = INIT_CR4; sregs.efer = INIT_EFER;
  if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs;
  memset(&regs, 0, sizeof regs);
  regs.rip = 0x10000; regs.rsp = 0x9000; regs.rflags = 2;
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
  const char *end = "halted";
  for (int i = 0; i < 64; i++) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) { if (errno == EINTR) continue; die("KVM_RUN"); }
    if (run->exit_reason == KVM_EXIT_HLT) break;
    end = run->exit_reason == KVM_EXIT_SHUTDOWN ? "the guest shut down (a triple fault)" : "an unexpected VM exit";
    break;
  }
  char b[96];
  for (int i = 0; i < NSTEPS; i++) {
    int r = mem[RES + i], ok = 0;
    for (int k = 0; k < 4 && STEPS[i].allowed[k] >= 0; k++) ok |= STEPS[i].allowed[k] == 0 || STEPS[i].allowed[k] == r;
    if (ok) continue;
    printf("DIVERGES at call %d: %s\n  clause:   %s\n  spec:     %s\n            [%s]\n  expected: %s\n"
           "  observed: %s%s%s\n", STEPS[i].call, STEPS[i].text, STEPS[i].clause, STEPS[i].statement,
           STEPS[i].citation, STEPS[i].expected, describe(r, b, sizeof b), r ? "" : "; ", r ? "" : end);
    return 1;
  }
  printf("CONFORMS: every write's outcome is one the model allows (%d writes)\n", NSTEPS);
  return 0;
}
'''

_HEAD = r'''/* A standalone reproducer written by `memspec repro --target kvm`: C99, libc and the kernel's uapi
 * headers.  Build: cc -O2 -o repro repro.c    Run: ./repro (needs /dev/kvm).
 * Exit 0: every write conforms; 1: a divergence (printed with the clause); 2: the VM could not be set up.
 * One vCPU straight in 64-bit mode (KVM_SET_SREGS), the program's control-register writes in one guest
 * code sequence; the #GP handler records the #GP and resumes at the next write. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

struct step { int call, kind; uint64_t value; int allowed[4];   /* 0: any; -1 ends the list */
              const char *text, *clause, *statement, *citation, *expected; };
'''


def c_source(r: Any, init: tuple[int, int, int]) -> str:
    rows = []
    for cc in r.checks:
        call = r.program.calls[cc.index]
        if cc.any_outcome:
            allowed = [0]
        else:
            codes = [_code(o) for o in (cc.exact or [])]
            if not codes or any(c is None for c in codes):
                raise UsageError(f"repro: the outcomes the model allows for call {cc.index + 1} "
                                 f"({cc.expected}) have no /dev/kvm C check yet")
            allowed = sorted(set(c for c in codes if c is not None))[:3]
        value = int(cc.text and _arg(r, cc.index))
        rows.append(f"  {{{cc.index + 1}, {CALLS[call.name]}, {value:#x}ULL, {{{', '.join(map(str, allowed + [-1]))}}},\n"
                    f"   {_c(cc.text)}, {_c(cc.clause)},\n   {_c(cc.statement)},\n   {_c(cc.citation)}, {_c(cc.expected)}}},")
    cr0, cr4, efer = init
    return (_HEAD + f"#define INIT_CR0 {cr0:#x}ULL\n#define INIT_CR4 {cr4:#x}ULL\n#define INIT_EFER {efer:#x}ULL\n"
            f"#define NSTEPS {len(rows)}\nstatic const struct step STEPS[] = {{\n" + "\n".join(rows) + "\n};\n" + _MAIN)


def _arg(r: Any, index: int) -> int:
    from memspec.program import eval_args
    return int(eval_args(r.program.calls[index], {})[0]) & ((1 << 64) - 1)


def readme(r: Any, cmd: str) -> str:
    first = next((c for c in r.checks if c.diverges), None)
    lines = [f"# Reproducer: {first.clause if first else 'a conforming run'} on {r.target}", "",
             f"Made by `{cmd}` from this memspec program:", "", "```"]
    lines += [format_call(c) for c in r.program.calls] + ["```", "",
              f"Seen on: target `{r.target}`, version `{r.version or 'unknown'}`.", "", "## What it shows", ""]
    if first is not None:
        lines += [f"Call {first.index + 1}, `{first.text}`, does not do what the specification allows.", "",
                  f"- clause: `{first.clause}`: {first.statement}", f"- spec: {first.citation}",
                  f"- expected: {first.expected}",
                  f"- observed: {first.observed.describe() if first.observed else '?'}", ""]
    else:
        lines += ["Every call's outcome is one the model allows (memspec's verdict: pass).", ""]
    lines += ["## Build and run", "", "```", "cc -O2 -o repro repro.c", "./repro", "```", "",
              "It needs /dev/kvm and no memspec or Python. It prints `DIVERGES at call N` with the clause, the "
              "spec, expected and observed and exits 1, or prints `CONFORMS` and exits 0 (2: the VM could not be "
              "set up).", ""]
    return "\n".join(lines)


def repro_kvm(path: str, out: str | None, timeout: float = 10.0) -> tuple[str, Any]:
    from memspec.targets.registry import make_target
    from .repro import analyse
    prog = load(path)
    if prog.layer != "hw":
        raise UsageError(f"repro writes /dev/kvm C for hw programs; {path} is a {prog.layer} program")
    other = sorted({c.name for c in prog.calls} - set(CALLS))
    if other:
        raise UsageError(f"repro has no /dev/kvm C form for {', '.join(other)} yet (only {', '.join(CALLS)})")
    try:
        target = make_target("kvm", timeout=timeout)
    except TargetError as e:
        raise UsageError(str(e)) from None
    try:
        facts = target.facts()
        r = analyse(prog, target, facts)
    finally:
        target.close()
    if r.verdict.startswith("unsupported"):
        raise UsageError(f"not applicable: kvm refused the program ({r.verdict})")
    init = (0x80010001, 0x20, 0xD00 if facts.get("nx", True) else 0x500)
    src = c_source(r, init)
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(os.path.basename(path))[0])
    folder = out or os.path.join("memspec-repro", base)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "repro.c"), "w", encoding="utf-8") as fh:
        fh.write(src)
    with open(os.path.join(folder, "README.md"), "w", encoding="utf-8") as fh:
        fh.write(readme(r, f"memspec repro {os.path.basename(path)} --target kvm"))
    return folder, r


__all__ = ["repro_kvm", "c_source"]
