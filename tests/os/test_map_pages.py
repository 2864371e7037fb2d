"""map_pages (model/os/bulk.py) reaches vm.max_map_count: the model counts exactly when it runs
alone and allows the band of 64 mappings on a target with mappings of its own; the measured kernel
passes (suite program 56 on linux and linux-agent), and implementations whose limit is off by a
few, or that do not count VMAs at all, are caught (tests/os/broken_map_count.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from memspec.consts import MAP_PAGES_MAX, SANDBOX_WINDOW
from memspec.fuzz.differential import execute
from memspec.model.mm import Config, System
from memspec.program import load, parse
from memspec.records import Outcome
from memspec.targets.model import ModelTarget

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import broken_map_count  # noqa: E402

ROOT = HERE.parents[1]
SUITE = ROOT / "specs" / "suite" / "os" / "56-max-map-count.mst"
W = 0x100200000000
PROT_READ = 1
# the linux target's facts as measured on Linux 6.18: 115 lines of /proc/self/maps ([vsyscall] among them)
LINUX = {"quiet_ranges": [list(SANDBOX_WINDOW)], "base_maps": 115, "max_map_count": 65530}
SMALL = {"max_map_count": 300}


def expect(facts, n=70000, before=()):
    s = System(Config.from_facts(facts))
    for args in before:
        s.apply("main", "mmap", args, s.expect("main", "mmap", args).default)
    return s.expect("main", "map_pages", (W, n, PROT_READ))


def test_alone_the_model_counts_exactly():
    # do_mmap refuses when map_count > max_map_count: 65,530 pages make 65,530 mappings, one more
    # is allowed, the page after that is ENOMEM
    e = expect({})
    assert e.default == Outcome(value=65531, errno="ENOMEM") and e.clause == "linux.mmap.max-map-count-reached"
    assert e.judge(Outcome(value=65531, errno="ENOMEM")) is None
    for k in (65528, 65530, 65532, 65534):
        assert e.judge(Outcome(value=k, errno="ENOMEM")) is not None, k
    assert e.judge(Outcome(value=70000)) is not None
    # a mapping of the program's own counts too
    one = expect({}, before=[(0x100100000000, 0x3000, 3, 0x22, -1, 0)])
    assert one.default == Outcome(value=65530, errno="ENOMEM") and len(one.allowed) == 1


def test_with_mappings_of_its_own_a_target_gets_the_band():
    e = expect(LINUX)
    nominal = 65530 - 115 + 1           # the first page with base_maps + k > max_map_count
    assert e.default == Outcome(value=nominal, errno="ENOMEM")
    assert e.judge(Outcome(value=65417, errno="ENOMEM")) is None        # measured on Linux 6.18
    assert e.judge(Outcome(value=nominal - 64, errno="ENOMEM")) is None
    assert e.judge(Outcome(value=nominal + 64, errno="ENOMEM")) is None
    assert e.judge(Outcome(value=nominal - 70, errno="ENOMEM")) is not None
    assert e.judge(Outcome(value=nominal + 70, errno="ENOMEM")) is not None
    assert e.judge(Outcome(value=70000)) is not None
    assert e.judge(Outcome(value=nominal, errno="EEXIST")) is not None


def test_fewer_pages_than_the_limit_all_map_and_an_occupied_page_stops_the_call():
    assert expect({}, n=1000).allowed == (Outcome(value=1000),)
    assert expect({}, n=0).allowed == (Outcome(value=0),)
    # page 3 of the call is taken: MAP_FIXED_NOREPLACE is EEXIST there, pages 0-2 are mapped
    e = expect({}, n=10, before=[(W + 6 * 4096, 4096, 3, 0x32, -1, 0)])
    assert e.allowed == (Outcome(value=3, errno="EEXIST"),)
    s = System()
    s.apply("main", "map_pages", (W, 10, PROT_READ), Outcome(value=4, errno="EEXIST"))
    assert s.maps("main") == [(W + 2 * k * 4096, W + (2 * k + 1) * 4096, "r--p") for k in range(4)]


def test_n_out_of_range_is_einval_and_maps_nothing():
    for n in (-1, MAP_PAGES_MAX + 1):
        e = expect({}, n=n)
        assert e.allowed == (Outcome(value=-1, errno="EINVAL"),) and e.clause == "memspec.map_pages.einval-n"


def test_the_suite_program_passes_on_the_model():
    j = execute(ModelTarget(), load(str(SUITE)), {})
    assert j.failure is None, j.failure


@pytest.mark.parametrize("bug", sorted(broken_map_count.BUGS))
def test_a_broken_limit_is_caught(bug):
    prog = parse(f"n = map_pages({W:#x}, 400, PROT_READ)\nx = load({W:#x})\n")
    ref = broken_map_count.target("reference", **SMALL)
    assert execute(ref, prog, ref.facts()).failure is None
    t = broken_map_count.target(bug, **SMALL)
    j = execute(t, prog, t.facts())
    assert j.failure is not None and j.failure.clause == "linux.mmap.max-map-count-reached", j.failure
    assert j.failure.index == 0


def test_the_limit_off_by_three_is_caught_at_the_default_limit():
    t = broken_map_count.target("limit-off-by-3")
    j = execute(t, load(str(SUITE)), t.facts())
    assert j.failure is not None and j.failure.clause == "linux.mmap.max-map-count-reached", j.failure
    assert j.failure.index == 2


def test_alone_a_second_call_near_the_limit_is_still_exact():
    # mmap's own rule allows ENOMEM within 64 mappings of the limit (for a target's own mappings);
    # the model alone counts exactly, also when the process starts the call near the limit
    s = System(Config.from_facts(SMALL))
    first = s.expect("main", "map_pages", (W, 250, PROT_READ))
    assert first.allowed == (Outcome(value=250),)
    s.apply("main", "map_pages", (W, 250, PROT_READ), first.default)
    second = s.expect("main", "map_pages", (W + 0x10000000, 100, PROT_READ))
    assert second.allowed == (Outcome(value=51, errno="ENOMEM"),)
    # with mappings of its own, the same call may stop anywhere in the band
    band = System(Config.from_facts({**SMALL, "quiet_ranges": LINUX["quiet_ranges"]}))
    band.apply("main", "map_pages", (W, 250, PROT_READ), Outcome(value=250))
    e = band.expect("main", "map_pages", (W + 0x10000000, 100, PROT_READ))
    assert {o.value for o in e.allowed} == set(range(0, 101)) and e.default == Outcome(value=51, errno="ENOMEM")
