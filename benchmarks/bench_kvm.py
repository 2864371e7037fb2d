"""kvm_diff_vs_raw: judged KVM paging checks per second against bare KVM_RUN round trips.

Both rates are measured in the same run, on the CPL 0 path (KVM's emulator and
software walker):

* raw:    the host rewrites a PTE through guest memory, the guest executes
          ``invlpg [rbx]; mov rax, [rbx]; hlt``, the host reads RAX (KVM_GET_REGS);
* judged: the same step as program calls, ``set_pte`` + ``invlpg`` + ``access``,
          run on the ``kvm`` target (PTE stores by guest code, whole program in few
          KVM_RUNs) and judged call by call by the hw model.

One iteration is one PTE change plus one checked load.  Usage::

    python benchmarks/bench_kvm.py [ITERATIONS]

prints both rates and the ratio (the issue asks for >= 0.5).
"""

from __future__ import annotations

import struct
import sys
import time

from memspec.program import parse
from memspec.specs.judge import judge
from memspec.targets import kvm as K
from memspec.targets.kvm import guest as G, ioctl as KIO

LA = 0x405008
ROOT, PDPT, PD, PT = 0x200000, 0x201000, 0x202000, 0x203000
FRAMES = [0x300000 + 0x1000 * i for i in range(8)]


def raw_rate(n: int) -> float:
    kvm = KIO._Kvm.get()
    vm = G._Vm(kvm, KIO.guest_cpuid(kvm))
    try:
        for table, idx, nxt in ((ROOT, 0, PDPT), (PDPT, 0, PD), (PD, 2, PT)):
            struct.pack_into("<Q", vm.mem, table + 8 * idx, nxt | 3)
        struct.pack_into("<Q", vm.mem, ROOT + 8 * 511, G.HARNESS_ENTRY)
        loop = G.CODE
        vm.mem[loop:loop + 9] = b"\x0f\x01\x3b\x48\x8b\x03\xf4\xeb\xf7"   # invlpg [rbx]; mov rax,[rbx]; hlt; jmp loop
        cr0, cr4, efer = G.CR0_PG | G.CR0_PE | G.CR0_WP, G.CR4_PAE, G.EFER_LME | G.EFER_LMA | G.EFER_NXE
        vm.set_control(cr0, ROOT, cr4, efer)
        vm.set_regs(rip=G.PHYS + loop, rbx=LA)
        wrong = 0
        t0 = time.perf_counter()
        for i in range(n):
            f = FRAMES[i & 7]
            struct.pack_into("<Q", vm.mem, PT + 8 * 5, f | 3)
            vm.run(0)
            if vm.get_regs()["rax"] != ((f + 8) << 8) | 0xCC:
                wrong += 1
        dt = time.perf_counter() - t0
        if wrong:
            raise SystemExit(f"raw loop read {wrong} wrong values")
        return n / dt
    finally:
        vm.close()


def program_text(n: int) -> str:
    lines = [f"set_pte({ROOT:#x}, 0, {PDPT:#x}, PTE_P|PTE_RW)", f"set_pte({PDPT:#x}, 0, {PD:#x}, PTE_P|PTE_RW)",
             f"set_pte({PD:#x}, 2, {PT:#x}, PTE_P|PTE_RW)", f"mov_cr3({ROOT:#x})"]
    for i in range(n):
        lines += [f"set_pte({PT:#x}, 5, {FRAMES[i & 7]:#x}, PTE_P|PTE_RW)", f"invlpg({LA:#x})",
                  f"v{i} = access({LA:#x}, ACC_READ, 0)"]
    return "\n".join(lines) + "\n"


def judged_rate(n: int) -> tuple[float, float, float]:
    program = parse(program_text(n))
    target = K.KvmTarget()
    facts = target.facts()
    try:
        target.run(parse("mov_cr3(0x200000)\n"))          # warm: VM created, harness ready
        t0 = time.perf_counter()
        run = target.run(program)
        t1 = time.perf_counter()
        j = judge(program, run, target.name, facts, invariants=True)
        t2 = time.perf_counter()
    finally:
        target.close()
    if j.failure is not None:
        raise SystemExit(f"judged run failed: {j.failure}")
    return n / (t2 - t0), n / (t1 - t0), n / (t2 - t1)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    raw = raw_rate(n)
    judged, run_only, judge_only = judged_rate(n)
    print(f"raw KVM_RUN round trips (host PTE write, guest INVLPG + load, GET_REGS): {raw:10.0f} /s")
    print(f"memspec judged (set_pte + invlpg + access, run on kvm and judged):       {judged:10.0f} /s")
    print(f"    of which: running on kvm {run_only:.0f} /s, judging by the model {judge_only:.0f} /s")
    print(f"kvm_diff_vs_raw = {judged / raw:.2f}")


if __name__ == "__main__":
    main()
