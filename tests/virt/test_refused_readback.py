"""A read of a paging entry that the model refuses (EINVAL: index 512 of a table) reads nothing.

The model adopts the value a target reads back from an entry whose A/D bits it cannot predict
(``_adopt_readback``); it used to adopt a *refused* read's -1 too, into the address the refused
index names -- here ``0x241000 + 8 * 512``, the first entry of the next table -- and then expected
a later set_gpte to fail (EINVAL) where qemu-system, correctly, did it (found by the virt generator's
argument edges, issue #26)."""

from __future__ import annotations

from memspec.program import parse
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget

PROGRAM = parse("""\
set_npte(0x240000, 0, 0x241000, PTE_P)
set_npte(0x241000, 0, 0x242000, PTE_P)
set_npte(0x242000, 0, 0x243000, PTE_P)
set_npte(0x243000, 19, 0xc13000, PTE_P)
vm_boot(0, VM_NPT, 0x240000, 0, 0x10000, CR4_PAE, EFER_LME)
v = vm_access(0x8080201000, 0, 0)
r = read_epte(0x241000, 512)
set_gpte(0x13000, 0, 0x10f000, 0)
""")


def test_a_refused_read_leaves_the_entry_it_would_have_named_alone() -> None:
    run = ModelTarget().run(PROGRAM)
    access, read, gpte = run.outcomes[-3:]
    assert access.signal == "#NPF"           # the walk left A/D bits of the nested tables unsure
    assert read.errno == "EINVAL"
    assert gpte.ok, gpte                     # the nested PD entry 0 still maps the guest table's page
    assert judge(PROGRAM, run, "model").passed
