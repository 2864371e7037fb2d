"""The three-way differential: peers that disagree, and the side the model takes."""

from __future__ import annotations

from memspec.fuzz.threeway import threeway
from memspec.program import parse
from memspec.targets.model import ModelTarget


def test_model_sides_with_the_peer_that_follows_the_sdm(kvm_target, kvm_facts):
    # WRPKRU with CR4.PKE = 0: the SDM says #UD; kvm-pvm's emulator gives up instead
    model = ModelTarget()
    tw = threeway(parse("mov_cr4(CR4_PAE)\nwrpkru(0)\n"), [model, kvm_target],
                  facts={"model": kvm_facts, "kvm": kvm_facts})
    assert [d.index for d in tw.disagreements] == [1]
    d = tw.disagreements[0]
    assert d.model_sides_with == ("model",)
    assert d.clause == "sdm.pkeys.wrpkru-ud" and "WRPKRU" in d.citation
    assert "sides with model" in tw.describe()


def test_peers_that_agree_report_nothing(kvm_target, kvm_facts):
    p = parse("set_pte(0x200000, 0, 0x201000, PTE_P|PTE_RW)\nset_pte(0x201000, 0, 0x202000, PTE_P|PTE_RW)\n"
              "set_pte(0x202000, 0, 0x203000, PTE_P|PTE_RW)\nset_pte(0x203000, 1, 0x300000, PTE_P)\n"
              "mov_cr3(0x200000)\nv = access(0x1008, ACC_READ, 0)\naccess(0x1008, ACC_WRITE, 0)\n"
              "access(0x1008, ACC_READ, 3)\n")
    tw = threeway(p, [ModelTarget(), kvm_target], facts={"model": kvm_facts, "kvm": kvm_facts})
    assert tw.disagreements == [], tw.describe()
    assert all(j.passed for j in tw.judgements.values())
