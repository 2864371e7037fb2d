"""mseal and sealed mappings (model/os/sealing.py), as Linux 6.18 was measured to behave; a kernel
that lets a sealed mapping go is caught."""

from __future__ import annotations

from memspec.program import parse
from memspec.records import Outcome, RunResult
from memspec.specs.judge import judge

W = 0x100009000000


def failed(text: str, outcomes: list[Outcome], kernel: str = "6.18.0") -> str | None:
    j = judge(parse(text), RunResult(tuple(outcomes), ()), "t", {"kernel": kernel})
    return j.failure.clause if j.failure else None


def ok(v: int = 0) -> Outcome:
    return Outcome(value=v)


def err(name: str) -> Outcome:
    return Outcome(value=-1, errno=name)


DONE = Outcome()
SEGV = Outcome(signal="SIGSEGV")
A = f"a = mmap({W:#x}, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"


def test_mseal_checks_in_order_and_seals_nothing_over_a_hole():
    text = A + ("e1 = mseal(a, 0x1000, 1)\ne2 = mseal(a+1, 0x1000, 0)\ne3 = mseal(a, 0x3000, 0)\n"
                "munmap(a, 0x1000)\n")
    good = [ok(W), err("EINVAL"), err("EINVAL"), err("ENOMEM"), ok(0)]
    assert failed(text, good) is None
    assert failed(text, good[:3] + [ok(0)] + good[4:]) == "linux.mseal.enomem-unmapped"
    assert failed(text, good[:4] + [err("EPERM")]) is not None      # the hole sealed nothing


def test_a_sealed_mapping_refuses_unmap_move_and_protection_changes():
    text = A + ("mseal(a+0x1000, 0x1000, 0)\ne1 = munmap(a, 0x2000)\ne2 = mprotect(a, 0x2000, PROT_READ)\n"
                "store(a, 1)\ne3 = mremap(a+0x1000, 0x1000, 0x2000, MREMAP_MAYMOVE, 0)\n"
                "e4 = mmap(a+0x1000, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)\n"
                "p = fork()\np: e5 = munmap(a+0x1000, 0x1000)\np: exit()\n")
    good = [ok(W), ok(0), err("EPERM"), err("EPERM"), SEGV, err("EPERM"), err("EPERM"), ok(9), err("EPERM"), DONE]
    assert failed(text, good) is None
    assert failed(text, good[:2] + [ok(0)] + good[3:]) == "linux.mseal.eperm"
    assert failed(text, good[:4] + [DONE] + good[5:]) is not None    # mprotect changed the page before
    assert failed(text, good[:8] + [ok(0), DONE]) == "linux.mseal.eperm"   # the child keeps the seal


def test_discarding_advice_on_sealed_read_only_anonymous_memory():
    text = (f"r = mmap({W:#x}, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nmseal(r, 0x1000, 0)\n"
            "e = madvise(r, 0x1000, MADV_DONTNEED)\nmadvise(r, 0x1000, MADV_COLD)\n"
            f"w = mmap({W + 0x10000:#x}, 0x1000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
            "mseal(w, 0x1000, 0)\nmadvise(w, 0x1000, MADV_DONTNEED)\n")
    good = [ok(W), ok(0), err("EPERM"), ok(0), ok(W + 0x10000), ok(0), ok(0)]
    assert failed(text, good) is None
    assert failed(text, good[:2] + [ok(0)] + good[3:]) == "linux.mseal.eperm"


def test_before_linux_6_10_there_is_no_mseal():
    text = A + "e = mseal(a, 0x1000, 0)\n"
    assert failed(text, [ok(W), err("ENOSYS")], kernel="6.9.0") is None
    assert failed(text, [ok(W), ok(0)], kernel="6.9.0") == "linux.mseal.enosys"


def test_a_zero_length_seal_changes_nothing():
    # mm/mseal.c do_mseal: end == start returns 0 before any VMA is touched (the model once
    # split a VMA at the address and left an empty one behind: memspec.inv.vma-page-aligned)
    from memspec.model.mm import new_model
    m = new_model({})
    o = m.expect("main", "mmap", (W, 0x3000, 0, 0x22, -1, 0)).default
    m.apply("main", "mmap", (W, 0x3000, 0, 0x22, -1, 0), o)
    before = m.maps("main")
    e = m.expect("main", "mseal", (W + 0x1000, 0, 0))
    assert e.default.value == 0
    m.apply("main", "mseal", (W + 0x1000, 0, 0), e.default)
    assert m.maps("main") == before and m.invariants(full=True) == []
