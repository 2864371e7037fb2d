"""The os layer's audit (docs/os-audit.md): the answers that are not exact are all listed, with
their reasons, and counted; every advice and flag value of the 6.x uapi has a rule; the rules
added for them judge what Linux 6.18 was measured to do, and catch a kernel that does otherwise."""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

from memspec.consts import MADV, MAP, MCL, MLOCK, MREMAP, MS
from memspec.model.mm import new_model
from memspec.model.os.open_answers import OPEN_ANSWERS
from memspec.model.os.state import ADVICE_SINCE
from memspec.program import parse
from memspec.records import Outcome, RunResult
from memspec.specs import catalogue
from memspec.specs.judge import judge

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "os-audit.md"
# The number of places where the os model allows more than one outcome or answers unknown.
# Make a rule exact and this goes down; a new open answer needs its reason in OPEN_ANSWERS.
OPEN_COUNT = 43


def open_sites(source: str) -> list[str]:
    """The functions (by name, once per site) that build an open answer: ``unknown=True``,
    ``impl_defined=True`` or ``or_errno(...)``."""
    out: list[str] = []

    def visit(node: ast.AST, fn: str) -> None:
        for ch in ast.iter_child_nodes(node):
            f = ch.name if isinstance(ch, ast.FunctionDef) else fn
            if isinstance(ch, ast.Call):
                name = getattr(ch.func, "id", getattr(ch.func, "attr", ""))
                kws = {k.arg: k.value for k in ch.keywords}
                if name == "or_errno" or any(isinstance(kws.get(k), ast.Constant) and kws[k].value is True
                                             for k in ("unknown", "impl_defined")):
                    out.append(f)
            visit(ch, f)
    visit(ast.parse(source), "")
    return out


def code_sites() -> Counter:
    files = sorted((ROOT / "model" / "os").glob("*.py")) + [ROOT / "model" / "mm.py"]
    return Counter((p.stem, f) for p in files for f in open_sites(p.read_text()))


def test_every_open_answer_in_the_source_is_listed_with_its_reason():
    listed = Counter((m, f) for m, f, _, _ in OPEN_ANSWERS)
    assert code_sites() == listed, "model/os/open_answers.py and the source differ"
    assert all(len(reason) > 30 for *_, reason in OPEN_ANSWERS)


def test_the_count_only_changes_knowingly():
    assert len(OPEN_ANSWERS) == OPEN_COUNT, (
        f"{len(OPEN_ANSWERS)} open answers, the audit says {OPEN_COUNT}: update OPEN_COUNT and docs/os-audit.md")


def test_the_scanner_finds_each_kind_of_open_answer():
    src = ("def a():\n    return Expect('c', OK, 'x', unknown=True)\n"
           "def b():\n    return Expect('c', OK, 'x', (OK,), impl_defined=True)\n"
           "def c(ok):\n    return or_errno(ok, 'c', 'ENOMEM')\n"
           "def d():\n    return Expect('c', OK, 'x', unknown=False)\n")
    assert open_sites(src) == ["a", "b", "c"]


def test_the_document_lists_the_same_open_answers_and_clauses_exist():
    text = DOC.read_text()
    section = text.split("## Answers that are not exact", 1)[1]
    rows = re.findall(r"^\| `(\w+)\.(\w+)` \| `([\w.-]+)` \|", section, re.M)
    assert Counter((m, f) for m, f, _ in rows) == Counter((m, f) for m, f, _, _ in OPEN_ANSWERS)
    assert f"{OPEN_COUNT} places" in section
    known = catalogue.all_clauses()
    assert all(c in known for _, _, c, _ in OPEN_ANSWERS)
    assert all(c in known for _, _, c in rows)


def test_every_uapi_value_is_a_constant_and_every_advice_has_a_release():
    # asm-generic/mman-common.h, linux/mman.h, arch/x86/include/uapi/asm/mman.h (6.x)
    assert set(MADV.values()) == set(ADVICE_SINCE)
    for name in ("MAP_DROPPABLE", "MAP_ABOVE4G", "MAP_HUGE_2MB", "MAP_HUGE_1GB", "MAP_SYNC", "MAP_FIXED_NOREPLACE"):
        assert name in MAP
    assert MAP["MAP_HUGE_2MB"] == 21 << 26 and MAP["MAP_HUGE_1GB"] == 30 << 26 and MAP["MAP_DROPPABLE"] == 0x08
    assert (MADV["MADV_GUARD_INSTALL"], MADV["MADV_GUARD_REMOVE"], MADV["MADV_COLLAPSE"]) == (102, 103, 25)
    assert set(MREMAP) == {"MREMAP_MAYMOVE", "MREMAP_FIXED", "MREMAP_DONTUNMAP"}
    assert set(MS) == {"MS_ASYNC", "MS_INVALIDATE", "MS_SYNC"} and set(MLOCK) == {"MLOCK_ONFAULT"}
    assert set(MCL) == {"MCL_CURRENT", "MCL_FUTURE", "MCL_ONFAULT"}
    text = DOC.read_text()
    table = text.split("## Every advice and flag value", 1)[1].split("## Answers", 1)[0]
    for name in [*MADV, *MREMAP, *MS, *MCL, *MLOCK, "MAP_DROPPABLE", "MAP_ABOVE4G", "MAP_SYNC", "MAP_HUGE_16GB"]:
        assert name in table, f"{name} has no row in docs/os-audit.md"


# -- the new rules judge the measured kernel and catch a wrong one -------------------------------

W = 0x100008000000
LINUX_6_18 = {"kernel": "6.18.0", "madv_known": [0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
                                                 21, 22, 23, 24, 25, 102, 103]}


def failed(text: str, outcomes: list[Outcome], facts: dict | None = None) -> str | None:
    j = judge(parse(text), RunResult(tuple(outcomes), ()), "t", facts if facts is not None else LINUX_6_18)
    return j.failure.clause if j.failure else None


def ok(v: int = 0) -> Outcome:
    return Outcome(value=v)


def err(name: str) -> Outcome:
    return Outcome(value=-1, errno=name)


DONE = Outcome()
SEGV = Outcome(signal="SIGSEGV")


def test_wipeonfork_empties_the_childs_copy_and_is_applied_before_a_later_vma_fails():
    text = (f"a = mmap({W:#x}, 0x1000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
            f"c = mmap({W + 0x1000:#x}, 0x1000, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_ANONYMOUS, -1, 0)\n"
            "store(a, 4)\ne = madvise(a, 0x2000, MADV_WIPEONFORK)\np = fork()\np: x = load(a)\np: exit()\n")
    good = [ok(W), ok(W + 0x1000), DONE, err("EINVAL"), ok(77), ok(0), DONE]
    assert failed(text, good) is None                                        # measured on 6.18
    assert failed(text, good[:5] + [ok(4), DONE]) == "linux.mmap.anon-zero-fill"   # a kernel that copied it
    assert failed(text, good[:3] + [ok(0)] + good[4:]) == "linux.madvise.einval-wipeonfork"


def test_dontneed_zaps_the_vmas_before_a_locked_one():
    text = (f"d = mmap({W:#x}, 0x1000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
            f"l = mmap({W + 0x1000:#x}, 0x1000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
            "store(d, 5)\nmlock(l, 0x1000)\ne = madvise(d, 0x2000, MADV_DONTNEED)\ny = load(d)\n")
    good = [ok(W), ok(W + 0x1000), DONE, ok(0), err("EINVAL"), ok(0)]
    assert failed(text, good) is None
    assert failed(text, good[:5] + [ok(5)]) is not None       # the first VMA must be zapped


def test_guard_pages_fault_until_removed_and_survive_dontneed():
    text = (f"a = mmap({W:#x}, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
            "store(a, 7)\nmadvise(a, 0x1000, MADV_GUARD_INSTALL)\nx = load(a)\nmadvise(a, 0x2000, MADV_DONTNEED)\n"
            "y = load(a)\ne = madvise(a, 0x2000, MADV_POPULATE_READ)\nm = mincore(a, 0x2000)\n"
            "madvise(a, 0x1000, MADV_GUARD_REMOVE)\nz = load(a)\n")
    good = [ok(W), DONE, ok(0), SEGV, ok(0), SEGV, err("EFAULT"), ok(0), ok(0), ok(0)]
    assert failed(text, good) is None
    assert failed(text, good[:3] + [ok(7)] + good[4:]) == "linux.madvise.guard-install"
    assert failed(text, good[:5] + [ok(0)] + good[6:]) == "linux.madvise.guard-install"
    assert failed(text, good[:6] + [ok(0)] + good[7:]) == "linux.madvise.populate-efault"
    assert failed(text, good[:9] + [SEGV]) is not None


def test_populate_needs_the_right_and_stops_at_a_hole():
    text = (f"n = mmap({W:#x}, 0x1000, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
            "e = madvise(n, 0x1000, MADV_POPULATE_READ)\n"
            f"h = mmap({W + 0x10000:#x}, 0x1000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
            "f = madvise(h, 0x3000, MADV_POPULATE_WRITE)\nm = mincore(h, 0x1000)\n")
    good = [ok(W), err("EINVAL"), ok(W + 0x10000), err("ENOMEM"), ok(1)]
    assert failed(text, good) is None
    assert failed(text, good[:1] + [ok(0)] + good[2:]) == "linux.madvise.populate-einval"
    assert failed(text, good[:4] + [ok(0)]) == "posix.mincore.residency"   # the prefix was populated


def test_shared_validate_mask_of_linux_6_18():
    text = ("fd = memfd_create(\"v\", 0)\nftruncate(fd, 0x2000)\n"
            f"a = mmap({W:#x}, 0x2000, PROT_READ, MAP_SHARED_VALIDATE|MAP_FIXED_NOREPLACE, fd, 0)\n"
            "b = mmap(NULL, 0x2000, PROT_READ, MAP_SHARED_VALIDATE|MAP_HUGE_1GB, fd, 0)\n")
    good = [ok(3), ok(0), err("ENOTSUP"), ok(0x7F0000000000)]
    assert failed(text, good) is None
    assert failed(text, good[:2] + [ok(W)] + good[3:]) == "linux.mmap.eopnotsupp-validate"
    assert failed(text, good[:3] + [err("ENOTSUP")]) is not None


def test_droppable_and_above4g():
    text = ("d = mmap(NULL, 0x2000, PROT_READ|PROT_WRITE, MAP_DROPPABLE|MAP_ANONYMOUS|MAP_LOCKED, -1, 0)\n"
            "h = mmap(NULL, 0x2000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_ABOVE4G, -1, 0)\n")
    assert failed(text, [err("EINVAL"), ok(0x7F0000000000)]) is None
    assert failed(text, [ok(0x7F0000000000), ok(0x7F0000100000)]) == "linux.mmap.droppable"
    assert failed(text, [err("EINVAL"), ok(0x10000000)]) == "linux.mmap.above4g"


def test_advice_a_kernel_does_not_know_is_einval_and_hwpoison_needs_cap_sys_admin():
    text = (f"a = mmap({W:#x}, 0x1000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
            "p = fork()\np: drop_privileges()\np: e = madvise(a, 0x1000, MADV_HWPOISON)\np: exit()\n")
    with_mf = dict(LINUX_6_18, madv_known=LINUX_6_18["madv_known"] + [100, 101])
    assert failed(text, [ok(W), ok(9), ok(0), err("EINVAL"), DONE]) is None           # compiled out (measured)
    assert failed(text, [ok(W), ok(9), ok(0), err("EPERM"), DONE]) == "posix.madvise.einval-advice"
    assert failed(text, [ok(W), ok(9), ok(0), err("EPERM"), DONE], with_mf) is None
    assert failed(text, [ok(W), ok(9), ok(0), ok(0), DONE], with_mf) == "linux.madvise.eperm-hwpoison"
    # by release, without a probe: MADV_GUARD_INSTALL arrived in 6.13
    old = "a = mmap(0x100008000000, 0x1000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n" \
          "e = madvise(a, 0x1000, MADV_GUARD_INSTALL)\n"
    assert failed(old, [ok(W), err("EINVAL")], {"kernel": "6.12.3"}) is None
    assert failed(old, [ok(W), ok(0)], {"kernel": "6.12.3"}) == "posix.madvise.einval-advice"


def test_model_knows_the_probed_advice():
    m = new_model(LINUX_6_18)
    assert m.knows_advice(MADV["MADV_GUARD_INSTALL"]) and not m.knows_advice(MADV["MADV_HWPOISON"])
    assert not new_model({"kernel": "5.10.0"}).knows_advice(MADV["MADV_COLLAPSE"])


def test_the_check_summary_shows_the_count():
    from types import SimpleNamespace

    from memspec.commands.check import summary_lines
    from memspec.results import TargetResults

    os_lines = summary_lines(SimpleNamespace(targets=[TargetResults("linux", ["os"])]))
    assert any(f"os model: {OPEN_COUNT} rules allow more than one outcome" in line for line in os_lines)
    phys_lines = summary_lines(SimpleNamespace(targets=[TargetResults("model", ["phys"])]))
    assert not any("os model:" in line for line in phys_lines)


def test_mincore_reads_every_page_resident_for_a_file_the_caller_cannot_write():
    text = (f'fd = shm_open("/mc", O_CREAT|O_RDWR, 0x180)\nftruncate(fd, 0x2000)\n'
            f"s = mmap({W:#x}, 0x2000, PROT_READ, MAP_SHARED, fd, 0)\nx = load(s)\n"
            'm = memfd_create("m", 0)\nftruncate(m, 0x2000)\n'
            f"h = mmap({W + 0x10000:#x}, 0x2000, PROT_READ, MAP_SHARED, m, 0)\nz = load(h)\n"
            "p = fork()\np: drop_privileges()\np: m1 = mincore(s, 0x2000)\np: m2 = mincore(h, 0x2000)\np: exit()\n"
            "m3 = mincore(s, 0x2000)\n")
    good = [ok(3), ok(0), ok(W), ok(0), ok(4), ok(0), ok(W + 0x10000), ok(0), ok(9), ok(0), ok(3), ok(1), DONE, ok(1)]
    assert failed(text, good) is None                                             # measured on 6.18
    assert failed(text, good[:10] + [ok(1)] + good[11:]) == "posix.mincore.residency"   # a side channel
    assert failed(text, good[:11] + [ok(3)] + good[12:]) == "posix.mincore.residency"   # memfd shows the truth


def test_every_clause_the_audit_names_is_catalogued():
    known = set(catalogue.all_clauses())
    named = set(re.findall(r"\b((?:posix|linux|seed|memspec|glibc)\.[a-z0-9_-]+\.[a-z0-9_.-]*[a-z0-9])\b(?!\.\*)",
                           DOC.read_text()))
    assert named and not sorted(c for c in named if c not in known)


def test_mmap_of_a_pipe_checks_in_do_mmaps_order():
    text = ("p = pipe()\na = mmap(NULL, 0x1000, PROT_WRITE, MAP_SHARED, p, 0)\n"
            "b = mmap(NULL, 0x1000, PROT_READ|PROT_EXEC, MAP_PRIVATE, p, 0)\n"
            "d = mmap(NULL, 0x1000, PROT_READ, MAP_SHARED, p, 0)\n")
    good = [ok(3), err("EACCES"), err("EPERM"), err("ENODEV")]
    assert failed(text, good) is None                                            # measured on 6.18
    assert failed(text, good[:1] + [err("ENODEV")] + good[2:]) == "posix.mmap.eacces-fd-mode"
    assert failed(text, good[:2] + [err("ENODEV")] + good[3:]) == "linux.mmap.eperm-noexec"
    assert failed(text, good[:3] + [err("EPERM")]) == "posix.mmap.enodev"
    # before 6.18 the noexec pipefs is not pinned to a release: EPERM or ENODEV
    old = {"kernel": "6.12.3"}
    assert failed(text, good, old) is None
    assert failed(text, good[:2] + [err("ENODEV")] + good[3:], old) is None
    assert failed(text, good[:2] + [err("EACCES")] + good[3:], old) is not None


def test_map_populate_of_a_lockonfault_mapping_populates_nothing():
    text = open(ROOT / "specs" / "suite" / "os" / "50-populate-lockonfault.mst").read()
    a, c = 0x10000003C000, 0x10000004C000
    good = [ok(0), ok(a), ok(0), ok(0), ok(c), ok(3)]
    assert failed(text, good) is None                                            # measured on 6.18
    assert failed(text, good[:2] + [ok(1)] + good[3:]) == "posix.mincore.residency"
    assert failed(text, good[:5] + [ok(0)]) == "posix.mincore.residency"


def test_above4g_uses_a_free_hint_below_4g_and_still_refuses_a_search_there():
    text = open(ROOT / "specs" / "suite" / "os" / "52-above4g-hint.mst").read()
    assert failed(text, [ok(0x70000000), ok(0x10000)]) is None                  # measured on 6.18 (LSM floor)
    assert failed(text, [ok(0x70000000), ok(0x2000)]) is None                   # the sysctl's floor
    assert failed(text, [ok(0x50000000), ok(0x10000)]) == "linux.mmap.above4g"  # not the hint: a search below 4 GiB
    assert failed(text, [ok(0x70000000), ok(0x30000)]) == "linux.mmap.above4g"


def test_soak_findings_fetch_faults_the_page_in_and_dontunmap_checks_overlap():
    text = open(ROOT / "specs" / "suite" / "os" / "53-soak-findings.mst").read()
    a = 0x100000021000
    good = [ok(a), SEGV, ok(1), err("EINVAL"), err("EINVAL")]
    assert failed(text, good) is None                                            # measured on 6.18
    assert failed(text, good[:2] + [ok(0)] + good[3:]) is None                   # a probe's fault, not seen
    assert failed(text, good[:2] + [ok(3)] + good[3:]) == "posix.mincore.residency"   # the other page: never
    assert failed(text, good[:3] + [err("EFAULT")] + good[4:]) == "linux.mremap.einval-overlap"
    assert failed(text, good[:4] + [ok(a + 0x10000)]) == "linux.mremap.einval-overlap"


def test_fault_around_may_map_a_page_a_probe_cached():
    # a fetch cached page 4 of a shared mapping (in this process or a probe's); the read fault at
    # page 3 maps cached neighbours (do_fault_around): page 4's frame may now show in pagemap
    text = (f"a = mmap({W:#x}, 0x7000, PROT_READ, MAP_SHARED|MAP_ANONYMOUS, -1, 0)\nfetch(a+0x4000)\n"
            "load(a+0x3000)\nb = pfn_of(a+0x4000)\nc = pfn_of(a+0x6000)\n")
    assert failed(text, [ok(W), SEGV, ok(0), ok(0x1234), ok(0)]) is None          # measured on 6.18
    assert failed(text, [ok(W), SEGV, ok(0), ok(0), ok(0)]) is None
    assert failed(text, [ok(W), SEGV, ok(0), ok(0), ok(0x1234)]) == "linux.pagemap.not-present"


def test_map_count_limit_near_the_facts_limit_allows_enomem_with_nothing_changed():
    # six separate mappings; a hole in the middle of the last splits it in three
    text = "".join(f"m{i} = mmap({W + i * 0x10000:#x}, 0x3000, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
                   for i in range(6))
    text += ("e = munmap(m5+0x1000, 0x1000)\nx = load(m5+0x1000)\n"
             "f = mremap(m4, 0x1000, 0x1000, MREMAP_MAYMOVE|MREMAP_FIXED, m4+0x100000)\n")
    maps = [ok(W + i * 0x10000) for i in range(6)]
    near = dict(LINUX_6_18, max_map_count=170, base_maps=100)      # 100 + 6 + 64 >= 170
    far = dict(LINUX_6_18, max_map_count=65530, base_maps=100)
    refused = maps + [err("ENOMEM"), ok(0), err("ENOMEM")]
    done = maps + [ok(0), SEGV, ok(W + 0x40000 + 0x100000)]
    assert failed(text, refused, near) is None and failed(text, done, near) is None
    assert failed(text, refused, far) == "posix.munmap.removes-range"          # far from the limit: exact
    # ENOMEM unmaps nothing: the page still reads
    assert failed(text, maps + [err("ENOMEM"), SEGV, err("ENOMEM")], near) is not None
    assert failed(text, done[:-1] + [err("ENOMEM")], far) is not None


def test_mremap_duplicate_and_a_gappy_fixed_move_keep_the_state_the_kernel_reports():
    text = open(ROOT / "specs" / "suite" / "os" / "54-mremap-dup-and-gaps.mst").read()
    d = 0x7F2AA0647000
    good = [ok(0x100000060000), DONE, ok(d), ok(7), DONE, ok(9), ok(0x100000070000), ok(0x100000080000),
            ok(0x100000080000), ok(0)]                                           # measured on 6.18
    assert failed(text, good) is None
    assert failed(text, good[:3] + [ok(0)] + good[4:]) is not None               # the duplicate shares the pages
    assert failed(text, good[:5] + [ok(0)] + good[6:]) is not None
    assert failed(text, good[:9] + [SEGV]) is not None                           # the gap's part of e stays


def test_a_fixed_move_of_several_vmas_that_meets_a_seal_has_moved_the_ones_before():
    # soak seed 2 (with mseal in the generator): the first VMA moves, the sealed one refuses
    text = (f"a = mmap({W:#x}, 0x3000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\nstore(a, 5)\n"
            "mseal(a+0x1000, 0x2000, 0)\n"
            f"b = mremap(a, 0x3000, 0x3000, MREMAP_MAYMOVE|MREMAP_FIXED, {W + 0x100000:#x})\n"
            f"x = load(a)\ny = load({W + 0x100000:#x})\n")
    measured = [ok(W), DONE, ok(0), err("EPERM"), SEGV, ok(5)]                  # measured on 6.18
    assert failed(text, measured) is None
    assert failed(text, measured[:4] + [ok(5), SEGV]) is not None
    # before 6.17 the seal refuses the whole call: nothing moved
    old = {"kernel": "6.12.0"}
    assert failed(text, measured[:4] + [ok(5), SEGV], old) is None
    assert failed(text, measured, old) is not None


def test_a_shrink_whose_tail_is_sealed_is_eperm():
    text = (f"c = mmap({W:#x}, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)\n"
            "mseal(c+0x1000, 0x1000, 0)\nf = mremap(c, 0x2000, 0x1000, 0, 0)\nz = load(c+0x1000)\n")
    assert failed(text, [ok(W), ok(0), err("EPERM"), ok(0)]) is None              # measured on 6.18
    assert failed(text, [ok(W), ok(0), ok(W), SEGV]) == "linux.mseal.eperm"
