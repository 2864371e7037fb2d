"""Scale of the os layer: per-operation cost as the number of mappings grows, model and kernel side by side.

State at size N: N private anonymous one-page mappings, two pages apart (so no two
merge), each with one page read-faulted in (a present PTE to the zero page).

Operations, each timed over a batch and repeated (medians):

* ``mmap+munmap``: map one anonymous page where the kernel (model) picks, unmap it;
* ``mprotect``: one page of a mapping in the middle to PROT_READ and back (two calls);
* ``fault``: a write fault on a page in the middle, then MADV_DONTNEED (so the next one faults again);
* ``vma tree``: the VMA tree alone (``IntervalMap.set`` + ``find`` + ``remove`` of one page).

The model side is ``System.expect`` + ``System.apply`` (what the judge does per call);
its invariants are two series of their own: the full recount (one ``System.invariants()``
call at size N, what the judge runs at checkpoints and at the end of a program) and the
per-step check (one ``System.invariants(full=False)`` after each of the calls above, over
the call's footprint: what the judge runs after every call).  The kernel side is the same calls
through ctypes in a forked child that holds the N mappings.

The model's state is built directly (VMA tree inserts and the fault path), not
through N ``mmap`` calls, because each model ``mmap`` currently costs time
proportional to the resident pages (see docs/performance.md).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time

from memspec.commands.bench import Curve

NAME = "os_scale"
PAGE = 4096
PROT_READ, PROT_WRITE = 1, 2
MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED = 0x02, 0x20, 0x10
MADV_DONTNEED = 4
OPS = ("mmap+munmap", "mprotect", "fault")


def sizes(quick: bool) -> tuple[int, ...]:
    return (10, 1000, 8000) if quick else (10, 1000, 65000)


def batch(n: int) -> int:
    # operations per sample: enough that one slow first call (a cache filled, a chunk split)
    # does not decide a sample's time at the largest state either
    return 50 if n > 5000 else 100


# -- model -------------------------------------------------------------------------------------------

def model_state(n: int):
    from memspec.model import fault
    from memspec.model.mm import Config, System, Vma
    s = System(Config(ram_pages=1 << 20))
    mm = s.procs["main"]
    base = 0x100000000
    for i in range(n):
        a = base + 2 * i * PAGE
        v = Vma(PROT_READ | PROT_WRITE, False)
        mm.vmas.set(a, a + PAGE, v)
        fault.do_page_fault(s, mm, v, a, fault.READ)
    return s, base + 2 * (n // 2) * PAGE


def model_ops(s, mid: int, k: int) -> dict[str, float]:
    def do(name: str, args: tuple):
        e = s.expect("main", name, args)
        o = e.default
        s.apply("main", name, args, o)
        return o

    out = {}
    t0 = time.perf_counter()
    for _ in range(k):
        a = do("mmap", (0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)).value
        do("munmap", (a, PAGE))
    out["mmap+munmap"] = (time.perf_counter() - t0) / k
    t0 = time.perf_counter()
    for _ in range(k):
        do("mprotect", (mid, PAGE, PROT_READ))
        do("mprotect", (mid, PAGE, PROT_READ | PROT_WRITE))
    out["mprotect"] = (time.perf_counter() - t0) / (2 * k)
    t0 = time.perf_counter()
    for _ in range(k):
        do("store", (mid, 1))
        do("madvise", (mid, PAGE, MADV_DONTNEED))
    out["fault"] = (time.perf_counter() - t0) / k
    tree = s.procs["main"].vmas
    hole = mid + PAGE           # the unmapped page after ``mid``
    kt = 500      # the tree alone is cheap at every size: a larger batch keeps timer noise out
    t0 = time.perf_counter()
    for _ in range(kt):
        tree.set(hole, hole + PAGE, None)
        tree.find(hole)
        tree.remove(hole, hole + PAGE)
    out["vma tree"] = (time.perf_counter() - t0) / kt
    t0 = time.perf_counter()
    bad = s.invariants()
    out["invariants"] = time.perf_counter() - t0
    if bad:
        raise AssertionError(f"model invariant broken in the benchmark state: {bad[0]}")
    step, steps = 0.0, 0
    for _ in range(k):
        a = do("mmap", (0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)).value
        for name, args in (("store", (a, 1)), ("munmap", (a, PAGE)), ("mprotect", (mid, PAGE, PROT_READ)),
                           ("mprotect", (mid, PAGE, PROT_READ | PROT_WRITE)), ("store", (mid, 1)),
                           ("madvise", (mid, PAGE, MADV_DONTNEED)), (None, ())):
            t0 = time.perf_counter()
            bad = s.invariants(full=False)
            step += time.perf_counter() - t0
            steps += 1
            if bad:
                raise AssertionError(f"model invariant broken in the benchmark state: {bad[0]}")
            if name is not None:
                do(name, args)
    out["invariants per step"] = step / steps
    return out


# -- kernel ------------------------------------------------------------------------------------------

def _kernel_child(sizes_: tuple[int, ...], repeat: int, wfd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    mmap, munmap, mprotect, madvise = libc.mmap, libc.munmap, libc.mprotect, libc.madvise
    mmap.restype = ctypes.c_void_p
    mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    for f in (munmap, mprotect, madvise):
        f.restype = ctypes.c_int
    munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    mprotect.argtypes = madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    rw, anon = PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS
    results: dict[str, dict[int, list[float]] | str] = {op: {} for op in OPS}
    for _ in range(2000):     # warm-up: page tables, slab caches and ctypes' call paths
        a = mmap(None, PAGE, rw, anon, -1, 0)
        munmap(a, PAGE)
    # Each repeat builds every size afresh, in alternating order (small to large, then large
    # to small), so that drift in the machine's load does not masquerade as growth.
    for r in range(repeat):
        for n in (sizes_ if r % 2 == 0 else tuple(reversed(sizes_))):
            err = _kernel_sample(n, mmap, munmap, mprotect, madvise, results)
            if err:
                results["error"] = err
                os.write(wfd, json.dumps(results).encode())
                return
    os.write(wfd, json.dumps(results).encode())


def _kernel_sample(n: int, mmap, munmap, mprotect, madvise, results: dict) -> str | None:
    """Build N mappings, time one batch of each operation, remove them; an error message or None."""
    rw, anon = PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS
    span = 2 * n * PAGE
    base = mmap(None, span, 0, anon, -1, 0)
    if base in (None, ctypes.c_void_p(-1).value):
        return f"could not reserve {span} bytes"
    munmap(base, span)
    made = 0
    for i in range(n):
        a = base + 2 * i * PAGE
        if mmap(a, PAGE, rw, anon | MAP_FIXED, -1, 0) != a:
            break
        ctypes.c_char.from_address(a).value    # read fault: the zero page
        made += 1
    try:
        if made < n:
            return f"the kernel refused mapping {made + 1} of {n} (errno {ctypes.get_errno()}; vm.max_map_count?)"
        mid = base + 2 * (n // 2) * PAGE
        k = 500
        t0 = time.perf_counter()
        for _ in range(k):
            a = mmap(None, PAGE, rw, anon, -1, 0)
            munmap(a, PAGE)
        results["mmap+munmap"].setdefault(n, []).append((time.perf_counter() - t0) / k)
        t0 = time.perf_counter()
        for _ in range(k):
            mprotect(mid, PAGE, PROT_READ)
            mprotect(mid, PAGE, rw)
        results["mprotect"].setdefault(n, []).append((time.perf_counter() - t0) / (2 * k))
        cell = ctypes.c_char.from_address(mid)
        t0 = time.perf_counter()
        for _ in range(k):
            cell.value = b"\x01"
            madvise(mid, PAGE, MADV_DONTNEED)
        results["fault"].setdefault(n, []).append((time.perf_counter() - t0) / k)
        return None
    finally:
        munmap(base, span)


def kernel_samples(sizes_: tuple[int, ...], repeat: int) -> dict:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            _kernel_child(sizes_, repeat, w)
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 1 << 16)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(b"".join(chunks) or b"{}")


def curves(quick: bool, repeat: int) -> list[Curve]:
    ns = sizes(quick)
    out = {op: Curve(op, "mappings", 2.0) for op in OPS}
    model: dict[str, list[tuple[int, list[float]]]] = {
        op: [] for op in OPS + ("invariants", "invariants per step", "vma tree")}
    states = {n: model_state(n) for n in ns}
    samples: dict[int, dict[str, list[float]]] = {n: {op: [] for op in model} for n in ns}
    for r in range(repeat):
        for n in (ns if r % 2 == 0 else tuple(reversed(ns))):
            s, mid = states[n]
            for op, t in model_ops(s, mid, batch(n)).items():
                samples[n][op].append(t)
    for n in ns:
        for op in model:
            model[op].append((n, samples[n][op]))
    for op in OPS:
        out[op].series["model"] = model[op]
    inv = Curve("os invariants (one full check)", "mappings", float(ns[-1] // ns[0]), {"model": model["invariants"]},
                ["the recount the judge runs at checkpoints and at the end of a program: it reads every VMA, "
                 "PTE and page, so its goal is to grow no faster than the state"])
    step = Curve("os invariants per step (incremental)", "mappings", 2.0, {"model": model["invariants per step"]},
                 ["what the judge runs after every call: the invariants over the call's footprint (addresses, "
                  "VMA ranges, pages and objects it touched), after mmap, store, munmap, mprotect, madvise"])
    if sys.platform.startswith("linux"):
        k = kernel_samples(ns, repeat)
        for op in OPS:
            pts = sorted((int(n), v) for n, v in k.get(op, {}).items())
            if pts:
                out[op].series["kernel"] = pts
        if "error" in k:
            for c in out.values():
                c.notes.append(f"kernel: {k['error']}")
    else:
        for c in out.values():
            c.notes.append("kernel: unavailable (not Linux)")
    tree = Curve("VMA tree set+find+remove", "mappings", 2.0, {"IntervalMap": model["vma tree"]},
                 ["model/intervals.py alone (chunked sorted lists)"])
    return list(out.values()) + [inv, step, tree]
