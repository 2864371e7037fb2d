"""Every CPU feature the hw model depends on is a fact, judged both ways.

This machine has some features and lacks others; a user's has another set.  For each fact the
model reads (LA57, 1 GiB pages, PCID, INVPCID, SMEP, SMAP, PKU, NX, CET, VMX), a program whose
outcome depends on it is run on the model under each value, and the model must give the outcome
that value implies -- a model that assumes one value fails one side.  Then the model, under each
value, passes its own directed suite, random programs and state machine (no rule contradicts the
fact it reads).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from memspec.fuzz.layers import random_programs
from memspec.program import bind_result, eval_args, parse
from memspec.records import RunResult
from memspec.specs.directed import lacks, suite_programs
from memspec.specs.judge import judge
from memspec.specs.machine_hw import machine
from memspec.targets.model import ModelSession, ModelTarget

BOOT = "boot(CR0_PG|CR0_PE|CR0_WP, CR4_PAE, EFER_LME|EFER_LMA)\n"
TABLES = ("set_pte(0x200000, 0, 0x201000, PTE_P|PTE_RW|PTE_US)\n"
          "set_pte(0x201000, 0, 0x202000, PTE_P|PTE_RW|PTE_US)\n")

# fact -> (program, outcome of its last call with the feature, outcome without it)
CASES = {
    "la57": (BOOT + "mov_cr4(CR4_PAE|CR4_LA57)\n", "#GP", "#GP"),   # a change of LA57 in long mode: #GP either way
    "pcid": (BOOT + "mov_cr4(CR4_PAE|CR4_PCIDE)\n", "ok", "#GP"),
    "smep": (BOOT + "mov_cr4(CR4_PAE|CR4_SMEP)\n", "ok", "#GP"),
    "smap": (BOOT + "mov_cr4(CR4_PAE|CR4_SMAP)\n", "ok", "#GP"),
    "pku": (BOOT + "mov_cr4(CR4_PAE|CR4_PKE)\n", "ok", "#GP"),
    "nx": (BOOT + "wrmsr_efer(EFER_LME|EFER_LMA|EFER_NXE)\n", "ok", "#GP"),
    "invpcid": (BOOT + "mov_cr4(CR4_PAE|CR4_PCIDE)\ninvpcid(INVPCID_ALL, 0, 0)\n", "ok", "#UD"),
    "page1g": (BOOT + "set_pte(0x200000, 0, 0x201000, PTE_P|PTE_RW|PTE_US)\n"
               "set_pte(0x201000, 1, 0, PTE_P|PTE_RW|PTE_US|PTE_PS)\nmov_cr3(0x200000)\n"
               "access(0x40000000, ACC_READ, 0, 0)\n", "value", "#PF"),
}


def last_outcome(program_text: str, facts: dict) -> str:
    prog = parse(program_text)
    s = ModelSession("hw", facts)
    env: dict[str, int] = {}
    o = None
    for c in prog.calls:
        o = s.call(c, eval_args(c, env))
        bind_result(env, c, o.value)
    assert o is not None
    if o.signal:
        return o.signal
    return "ok" if o.value is None else "value"


@pytest.mark.parametrize("fact", sorted(CASES))
@pytest.mark.parametrize("has", [True, False])
def test_each_cpu_fact_decides_its_rule(fact, has) -> None:
    text, with_it, without = CASES[fact]
    if fact == "invpcid":                    # INVPCID needs PCID to be enabled first
        facts = {"pcid": True, "invpcid": has}
    else:
        facts = {fact: has}
    got = last_outcome(text, facts)
    assert got == (with_it if has else without), f"{fact}={has}: {got}"


def test_la57_decides_whether_a_five_level_boot_is_accepted() -> None:
    boot5 = "boot(CR0_PG|CR0_PE|CR0_WP, CR4_PAE|CR4_LA57, EFER_LME|EFER_LMA)\n"
    assert last_outcome(boot5, {"la57": True}) == "ok"
    assert last_outcome(boot5, {"la57": False}) != "ok"


def test_cet_decides_whether_cr4_cet_loads() -> None:
    prog = BOOT + "mov_cr4(0x800020)\n"      # CR4.CET (bit 23) | CR4.PAE
    assert last_outcome(prog, {"cet": True}) == "ok"
    assert last_outcome(prog, {"cet": False}) == "#GP"


class FactTarget(ModelTarget):
    """The reference model as a target, on a CPU with the given facts."""

    def __init__(self, facts: dict) -> None:
        self._facts = facts

    def facts(self) -> dict:
        return dict(self._facts)

    def session(self, layer: str = "os") -> ModelSession:
        return ModelSession(layer, self._facts)

    def run(self, program, observe: str = "end") -> RunResult:
        return super().run(program, observe)


FACT_SETS = [{k: v for k in ("la57", "page1g", "pcid", "invpcid", "smep", "smap", "pku", "nx")} for v in (True, False)]
FACT_SETS += [{"la57": False, "page1g": False, "pku": False, "smep": True, "smap": False, "pcid": True,
               "invpcid": False, "nx": True}]     # an AMD EPYC without PKU or LA57


@pytest.mark.parametrize("facts", FACT_SETS, ids=["all", "none", "epyc-no-pku"])
def test_the_model_under_each_fact_set_passes_its_own_suite_and_random_programs(facts) -> None:
    t = FactTarget(facts)
    ran = 0
    for origin, prog in list(suite_programs("hw")) + list(random_programs("hw", 60, 3, t.calls, facts)):
        if lacks(facts, prog.meta("requires")):
            continue
        run = t.run(prog)
        j = judge(prog, run, "model", facts)
        assert j.failure is None, f"{origin}: {j.failure}"
        ran += 1
    assert ran > 60


@pytest.mark.parametrize("facts", FACT_SETS, ids=["all", "none", "epyc-no-pku"])
def test_the_state_machine_on_the_model_under_each_fact_set(facts) -> None:
    M = machine(FactTarget(facts), facts)
    run_state_machine_as_test(M, settings=settings(max_examples=8, stateful_step_count=20, deadline=None,
                                                   suppress_health_check=list(HealthCheck), database=None))
