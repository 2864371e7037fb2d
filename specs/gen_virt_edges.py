"""Issue #26's argument edges and read-back shapes for the virt generator (``specs/gen_virt.py``).

* ``edge_call`` -- a run of calls, each with one argument at an edge of its documented range
  (``calls_virt``): lo - 1, hi or hi + 1 where a 64-bit number holds it (a bound checked with < for
  <=, or off by one, shows at one of them), the others valid; in a KPTI program ``kpti_edge_call``.
  Valid edges only where nothing of the program's or the harness's lives: entry 511 of a nested or
  guest table below the root (the roots' slot 511 is the harness's and refused), an entry of all
  ones in a nested table slot no walk uses.  Never a read of the guest root's slot 511 (the
  harness's own entry, which the model does not know).
* ``root_page_exec`` -- a guest page mapped onto the guest's own root table page while the nested
  leaf of that page allows reading and writing but not execution: a fetch there is an EPT violation
  of the final translation (Table 28-7 bit 8 set), which the harness's own code walk through the
  root's slot 511 (a read) does not meet first, so the exit names the fetch's gpa.
* ``sweep`` -- every 4 KiB nested leaf read back, highest index first: the A/D bits each walk
  left, and whether a read-back disturbed a neighbour.
"""

from __future__ import annotations

from typing import Any

from memspec.calls_hw import HARNESS_LOW, RAM_SIZE
from memspec.calls_virt import GUEST_HARNESS_SLOT, MAX_VMS
from memspec.program import Flags, Int

U64 = (1 << 64) - 1             # (program text holds 64-bit numbers: 2^64 itself is not an argument)
USER_TOP = 1 << 47
EDGE_RUN = 6                     # calls at most in one run of edges
UNUSED_NESTED_INDEX = 0x1F0      # a slot of the nested PT no gpa the program uses goes through (gpa 0x1F0000)
SPARE_GPA = 0x1F1000             # another (the next slot of that PT)
LOW_RAM_CASES = 5                # the first cases of ``edge_cases`` (with a nested PT): the spare gpa onto low RAM


def _int(v: int) -> Int:
    return Int(v, hex=v >= 4096)


def edge_cases(ept: bool, root: int, tables: list[int], guest_tables: list[int], gcr3: int, gva: int,
               boot: tuple, spare: int) -> list[tuple[str, tuple, bool]]:
    """Every call of ``edge_call``'s vocabulary, as (name, arguments, keeps a result); ``spare``: the
    lowest gpa past the guest tables that may hold another guest table."""
    setter = "set_epte" if ept else "set_npte"
    leaf = Flags(("EPT_R", "EPT_W", "EPT_X", "EPT_MT_WB") if ept else ("PTE_P", "PTE_RW", "PTE_US"))
    low, t, last, gt = HARNESS_LOW - 0x1000, tables[0], tables[-1], guest_tables[-1]
    acc = Flags(("ACC_READ",))
    # a guest table page whose nested leaf maps it onto the first page of RAM (its entry 0 is the first
    # qword of RAM: taken) or onto the page below (set_gpte/read_gpte refuse a gpa whose host address is
    # outside RAM): gpa SPARE_GPA, nothing else's
    low_ram = [(setter, (last, Int(SPARE_GPA >> 12), HARNESS_LOW, leaf), False),
               ("set_gpte", (SPARE_GPA, Int(0), 0, Int(0)), False), ("read_gpte", (SPARE_GPA, Int(0)), True),
               (setter, (last, Int(SPARE_GPA >> 12), _int(HARNESS_LOW - 0x1000), leaf), False),
               ("set_gpte", (SPARE_GPA, Int(0), 0, Int(0)), False)] if len(tables) == 3 else []
    return low_ram + [
        ("vm_boot", (Int(-1),) + boot, False), ("vm_boot", (Int(MAX_VMS),) + boot, False),     # vm 0..MAX_VMS-1
        ("vm_enter", (Int(-1),), False), ("vm_enter", (Int(MAX_VMS),), False),
        # a nested table in RAM [harness_low, ram), index 0..511, frame | flags 0..2^64-1
        (setter, (_int(RAM_SIZE), Int(0), 0, Int(0)), False), (setter, (_int(low), Int(0), 0, Int(0)), False),
        (setter, (t, Int(-1), 0, Int(0)), False), (setter, (t, Int(512), 0, Int(0)), False),
        # index 511 of a table below the root (the root's is the harness's, refused): a gpa nothing else maps
        (setter, (last, Int(511), 0, leaf), False), (setter, (root, Int(GUEST_HARNESS_SLOT), 0, Int(0)), False),
        (setter, (last, Int(UNUSED_NESTED_INDEX), _int(U64 & ~0xFFF), _int(0xFFF)), False),
        # refused reads only where table + 8 * index is no entry a walk uses: the model adopts a read's
        # value as the entry's where a walk left its A/D bits unsure, the refused read's -1 too
        ("read_epte", (_int(RAM_SIZE), Int(0)), True), ("read_epte", (_int(low), Int(0)), True),
        ("read_epte", (t, Int(-1)), True), ("read_epte", (last, Int(511)), True), ("read_epte", (last, Int(512)), True),
        # guest tables: index 0..511 (511 of the root is the harness's), frame | flags 0..2^64-1
        ("set_gpte", (gt, Int(-1), 0, Int(0)), False), ("set_gpte", (gt, Int(512), 0, Int(0)), False),
        ("set_gpte", (gt, Int(511), _int(U64 & ~0xFFF), _int(0xFFF)), False),
        ("set_gpte", (gcr3, Int(GUEST_HARNESS_SLOT), 0, Int(0)), False),
        ("read_gpte", (gt, Int(-1)), True), ("read_gpte", (gt, Int(511)), True),
        ("read_gpte", (gt, Int(512 if gt + 0x1000 < spare else -1)), True),
        ("vm_cr3", (_int(-0x1000),), False), ("vm_cr3", (_int(GUEST_HARNESS_SLOT << 39),), False),
        ("vm_access", (_int(gva), acc, Int(-1)), True), ("vm_access", (_int(gva), acc, Int(4)), True),
        ("vm_access", (_int(-8), acc, Int(3)), True), ("vm_access", (_int(U64 & ~7), acc, Int(3)), True),
        ("invept", (Int(0), root), False), ("invept", (Int(3), root), False),
        ("invept", (Flags(("INVEPT_SINGLE",)), _int(RAM_SIZE)), False),
    ]


def edge_call(g: Any, ept: bool, root: int, tables: list[int], guest_tables: list[int], gcr3: int, gvas: list[int],
              boot: tuple, spare: int) -> None:
    """A run of ``EDGE_RUN`` calls (two draws: where the run starts in ``edge_cases`` and how long it is),
    each with one argument at an edge of its range, the others valid.  ``tables``: the nested tables below
    the root; ``guest_tables``: the guest tables below its root ``gcr3``; ``gvas``: addresses the guest
    maps; ``boot``: the arguments of the guest's valid ``vm_boot`` after the vm number; ``spare``: see
    ``edge_cases``."""
    r = g.r
    cases = edge_cases(ept, root, tables, guest_tables, gcr3, gvas[0] if gvas else 0x1000, boot, spare)
    start = r.integer(0, len(cases) - 1)
    n = r.integer(1, EDGE_RUN)
    if start < LOW_RAM_CASES and len(tables) == 3:
        start, n = 0, LOW_RAM_CASES          # the low-RAM cases only make sense together: all of them
    for k in range(n):
        name, args, result = cases[(start + k) % len(cases)]
        g.emit(name, *args, result=result)


def kpti_edge_call(g: Any, in_kernel: bool, users: list[int]) -> None:
    """A KPTI call with its address or frame at an edge: -1 and -4096 for an access (refused), a user
    page at the top of user space's range or a frame past 2^52 for a mapping (refused)."""
    r = g.r
    if r.chance(30):
        if r.chance(50):
            g.emit("kpti_map", _int(r.choice([-0x1000, USER_TOP])), 0x3000000, Flags(("KMAP_USER",)))
        else:
            g.emit("kpti_map", r.choice(users), _int(r.choice([-0x1000, 1 << 52])), Flags(("KMAP_USER",)))
    else:
        # the access of the current mode at an address outside 0..2^64-1
        g.emit("kernel_access" if in_kernel else "user_access", _int(r.choice([-1, -0x1000])), result=True)


def root_page_exec(g: Any, pt: int, slots: list[tuple[int, int, int, int, int]], root: int, gcr3: int,
                   host: int) -> None:
    """A guest page onto the guest root table's page (gpa ``gcr3``), whose nested leaf (``pt`` index
    gcr3 >> 12) then allows R and W but not X: a fetch there exits with an EPT violation of the final
    translation at the fetch's own gpa; a read returns the root table's first qword.  ``host``: the hpa
    the leaf maps the root page to.  The leaf and the guest page put back after, with INVEPT."""
    r = g.r
    leaves = [sl for sl in slots if sl[4] == 1]
    if not leaves:
        return
    gva, t, i, gpa, _ = r.choice(leaves)
    idx = (gcr3 >> 12) & 0x1FF
    g.emit("set_gpte", t, Int(i), gcr3, Flags(("PTE_P", "PTE_RW", "PTE_US")))
    g.emit("set_epte", pt, Int(idx), host, Flags(("EPT_R", "EPT_W", "EPT_MT_WB")))
    g.emit("invept", Flags(("INVEPT_SINGLE",)), root)
    off = 8 * r.integer(0, 3)
    g.emit("vm_access", gva + off, Flags(("ACC_EXEC",)), Int(3))
    if r.chance(50):
        g.emit("vm_access", gva + off, Flags(("ACC_READ",)), Int(3), result=True)
    g.emit("set_epte", pt, Int(idx), host, Flags(("EPT_R", "EPT_W", "EPT_X", "EPT_MT_WB")))
    g.emit("invept", Flags(("INVEPT_SINGLE",)), root)
    g.emit("set_gpte", t, Int(i), gpa, Flags(("PTE_P", "PTE_RW", "PTE_US")))


def sweep(g: Any, leaves: list[tuple[int, int]]) -> None:
    """Every 4 KiB nested leaf read back, highest index first."""
    for t, i in sorted(leaves, key=lambda ti: (ti[0], -ti[1])):
        g.emit("read_epte", t, Int(i), result=True)


__all__ = ["edge_call", "kpti_edge_call", "root_page_exec", "sweep"]
