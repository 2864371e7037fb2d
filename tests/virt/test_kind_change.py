"""A guest booted with EPT and then, on the same root, with nested paging: the EPT-format mappings the
model's CPU cached under that root must not serve the nested-paging walk (model/walk2d.py
nested_options).  They did, and the model failed an assertion (a harness error) in the walk's rights
check: found by 60 s of `memspec fuzz --target model --layer virt`, from a mutated suite program."""

from __future__ import annotations

from memspec.program import parse
from memspec.specs.judge import judge
from memspec.targets.model import ModelTarget

PROGRAM = parse("""\
set_epte(0x200000, 0, 0x201000, EPT_R|EPT_W|EPT_X)
set_epte(0x201000, 0, 0x202000, EPT_R|EPT_W|EPT_X)
set_epte(0x202000, 0, 0x203000, EPT_R|EPT_W|EPT_X)
set_epte(0x203000, 16, 0x410000, EPT_R|EPT_W|EPT_X|EPT_MT_WB)
vm_boot(0, VM_EPT, 0x200000, EPTP_WB|EPTP_WL4, 0x10000, CR4_PAE, EFER_LME|EFER_LMA|EFER_NXE)
z = vm_access(0x3008, ACC_READ, 3)
vm_boot(0, VM_NPT, 0x200000, 0, 0x10000, CR4_PAE, EFER_LME|EFER_LMA|EFER_NXE)
m = vm_access(0x80606008, ACC_WRITE, 3)
""")


def test_an_ept_mapping_cached_under_a_root_does_not_serve_a_nested_paging_walk() -> None:
    run = ModelTarget().run(PROGRAM)          # raised AssertionError in nested_rights before the fix
    assert run.status.name == "OK"
    assert run.outcomes[4].ok and run.outcomes[6].ok      # both boots taken
    assert judge(PROGRAM, run, "model").passed
