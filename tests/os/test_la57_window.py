"""Host facts the placement reads: the task size (5-level paging) and the kernel version
(MAP_ABOVE4G's place in MAP_SHARED_VALIDATE's mask).  Each value of each fact, on the model."""

from __future__ import annotations

import pytest

from memspec.consts import MAP, PROT
from memspec.model.mm import new_model

W = (1 << 47) - 4096            # DEFAULT_MAP_WINDOW
LA57 = (1 << 56) - 4096
ANON = MAP["MAP_PRIVATE"] | MAP["MAP_ANONYMOUS"]


def _mmap(m, addr, length, flags=ANON, fd=-1):
    e = m.expect("main", "mmap", (addr, length, PROT["PROT_READ"], flags, fd, 0))
    return e


@pytest.mark.parametrize("task_size", [W, LA57])
def test_without_a_high_hint_mappings_stay_below_47_bits(task_size):
    m = new_model({"task_size": task_size})
    e = _mmap(m, 0, 4096)
    assert e.default.ok and e.default.value + 4096 <= W
    # an address above the window is refused without a hint above it, on either machine
    assert e.predicate is not None and e.predicate(type(e.default)(value=1 << 48)) is not None
    # a mapping as large as the whole 47-bit window never fits below it
    big = _mmap(m, 0, 1 << 47)
    assert big.default.errno == "ENOMEM"


def test_a_hint_above_the_window_is_used_on_a_5_level_machine():
    m = new_model({"task_size": LA57})
    e = _mmap(m, 1 << 48, 4096)
    assert e.default.value == 1 << 48
    assert e.predicate is None or e.predicate(type(e.default)(value=1 << 48)) is None
    # on a 4-level machine the same hint is beyond the task size: the kernel picks below 47 bits
    e4 = _mmap(new_model({"task_size": W}), 1 << 48, 4096)
    assert e4.default.ok and e4.default.value + 4096 <= W


def test_a_hint_range_across_the_window_is_not_used():
    m = new_model({"task_size": LA57})
    e = _mmap(m, W - 4096, 8192)
    assert e.default.ok and e.default.value != W - 4096 and e.default.value + 8192 <= W


def _memfd(m):
    e = m.expect("main", "memfd_create", ("x", 0))
    m.apply("main", "memfd_create", ("x", 0), e.default)
    fd = e.default.value
    m.apply("main", "ftruncate", (fd, 4096), m.expect("main", "ftruncate", (fd, 4096)).default)
    return fd


@pytest.mark.parametrize("kernel,refused", [("6.1.0-57-amd64", True), ("6.6.0", False), ("6.18.0", False)])
def test_map_above4g_in_the_validate_mask_by_kernel_version(kernel, refused):
    m = new_model({"kernel": kernel})
    fd = _memfd(m)
    e = _mmap(m, 0, 4096, MAP["MAP_SHARED_VALIDATE"] | MAP["MAP_ABOVE4G"], fd)
    assert (e.clause == "linux.mmap.eopnotsupp-validate" and e.default.errno is not None) == refused, (kernel, e.default)
