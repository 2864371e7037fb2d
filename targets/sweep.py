"""Sweep runners: one access per tree for a batch of ``memspec.sweepspace.Items``, per target.

* ``KernelRunner`` (``qemu-system``, ``bochs``): the test kernel's ``z`` command, one line per run
  of consecutive combination indexes, whole batches per round trip (shared memory under QEMU, the
  serial line under Bochs): the kernel decodes each index, loads the control state, writes the tree,
  makes the walk fresh, runs the access, reads the A/D flags back and writes a 16-byte binary record
  (``targets/testkernel/README.md``, Sweeps).
* ``UnicornRunner`` (``qemu``): the same steps on the unicorn machine, in process.
* ``KvmRunner`` (``kvm``, in ``targets/kvm/sweep.py``): the host writes the trees into guest memory and
  guest code (guest.S, ``t_sweep``) runs a batch of accesses per KVM_RUN.
* ``ModelRunner`` (``model``): the scalar reference walk (``model.walk``: ``walk`` +
  ``check_access``, §4.8's A/D updates), access by access: the sweep's judge is the batch
  walker, so a sweep of the model target is the scalar walk judged by the vectorised one.

``facts`` are what the runner's CPU offers (MAXPHYADDR, LA57, 1 GiB pages, SMEP, SMAP, PKU,
NX): the sweep reports the combinations that need more as unsupported, never as passed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memspec.calls_hw import pattern
from memspec.errors import TargetError
from memspec.model.pte import Mode
from memspec.model.walk import PageFault, Path, canonical, check_access, walk
from memspec.model.walk_legacy import accessed_dirty, load_pdptes, rights_mode, walk32, walk_pae
from memspec.sweepspace import (ALLOWED, GP, LEGACY, OTHER, PF, REFUSED, TABLES, Items, Observed, Space, build,
                                index_at)

from .testkernel_wire import (SWEEP_ERROR, SWEEP_EXC, SWEEP_OK, SWEEP_RECORD, SWEEP_RECORD_SIZE, SWEEP_REFUSED,
                              sweep_request, sweep_runs)

VECTOR_OF = {"#DE": 0, "#UD": 6, "#DF": 8, "#SS": 12, "#GP": 13, "#PF": 14}
FEATURES = ("maxphyaddr", "la57", "page1g", "smep", "smap", "pku", "nx")


class SweepRunner:
    name = ""
    facts: dict[str, Any]
    modes: tuple[str, ...] = ("4level", "5level")    # the paging modes it can sweep

    def refuse(self, mode: str) -> str:
        """Why this runner cannot sweep ``mode``."""
        return (f"--mode {mode}: the {self.name} target's sweep runs in IA-32e mode (its harness boots into "
                f"long mode), so it sweeps {' and '.join(self.modes)} paging only; PAE and 32-bit paging sweep "
                "on the model and qemu (unicorn) targets")

    def run(self, items: Items) -> Observed:
        raise NotImplementedError

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# the reference, access by access

def _tree(items: Items, i: int, entry_size: int) -> dict[int, int]:
    """Access ``i``'s page-table tree as memory: the physical address of each entry it writes
    (its ``written`` mask, root level first) and the entry."""
    mem = {}
    for k in range(items.levels):
        if int(items.written[i]) >> (items.levels - k - 1) & 1:
            table, idx = items.slot(k, i)
            mem[table + entry_size * idx] = int(items.entries[i, k])
    return mem


class ModelRunner(SweepRunner):
    """The scalar walk (the model's own) as a target.  MAXPHYADDR is 48 unless told otherwise, so
    that bit 51 is reserved as on the emulators' CPUs."""

    name = "model"
    modes = ("4level", "5level", "pae", "32bit")

    def __init__(self, maxphyaddr: int = 48) -> None:
        self.facts = {"maxphyaddr": maxphyaddr, "la57": True, "page1g": True, "smep": True, "smap": True,
                      "pku": True, "nx": True}

    def mode_of(self, items: Items, i: int) -> Mode:
        return Mode(int(items.cr0[i]), int(items.cr4[i]), int(items.efer[i]), int(items.pkru[i]),
                    self.facts["maxphyaddr"])

    def check(self, path: Path, mode: Mode, la: int, acc: int, cpl: int, ac: int) -> PageFault | None:
        """The rights of a completed walk (§4.6): the model's ``check_access`` (tests override it)."""
        return check_access(path, mode, la, acc, cpl, ac)[0]

    def run(self, items: Items) -> Observed:
        if items.paging in LEGACY:
            return self.run_legacy(items)
        n = len(items)
        obs = Observed.empty(n)
        for i in range(n):
            mode = self.mode_of(items, i)
            la = int(items.la[i])
            acc, cpl, ac = int(items.acc[i]), int(items.cpl[i]), int(items.ac[i])
            mem = _tree(items, i, 8)
            after = dict(mem)
            if not canonical(la, mode):
                obs.kind[i], obs.vector[i] = GP, 13
            else:
                res = walk(lambda pa: mem.get(pa, pattern(pa)), mode, TABLES[0], la, acc, cpl,
                           self.facts["page1g"])
                fault = res if isinstance(res, PageFault) else self.check(res, mode, la, acc, cpl, ac)
                if fault is not None:
                    obs.kind[i], obs.vector[i], obs.errcode[i], obs.cr2[i] = PF, 14, fault.errcode, fault.cr2
                else:
                    assert not isinstance(res, PageFault)
                    for u in res.uses:
                        after[u.addr] |= 0x20 | (0x40 if u is res.uses[-1] and acc == 1 else 0)
                    obs.kind[i] = ALLOWED
                    obs.value[i] = 0 if acc == 2 else pattern(res.pa(la) & ~7)
            ad = 0
            for k in range(items.levels):
                table, idx = items.slot(k, i)
                if table + 8 * idx in after:
                    ad |= ((after[table + 8 * idx] >> 5) & 3) << (2 * (items.levels - k - 1))
            obs.ad[i] = ad
        return obs


    def run_legacy(self, items: Items) -> Observed:
        """32-bit and PAE paging: ``model.walk_legacy`` (PAE: the PDPTEs loaded by MOV CR3 first, whose
        reserved bits are #GP(0))."""
        n = len(items)
        obs = Observed.empty(n)
        size = items.entry_size
        for i in range(n):
            mode = self.mode_of(items, i)
            la = int(items.la[i])
            acc, cpl, ac = int(items.acc[i]), int(items.cpl[i]), int(items.ac[i])
            mem = _tree(items, i, size)
            after = dict(mem)

            def read(pa: int) -> int:
                return mem[pa] if pa in mem else pattern(pa & ~7) >> (8 * (pa & 4)) if size == 4 else pattern(pa)

            if items.paging == "pae":
                pdptes = load_pdptes(read, mode, TABLES[0])
                res = (walk_pae(read, mode, pdptes, TABLES[0], la, acc, cpl) if not isinstance(pdptes, str)
                       else None)
            else:
                res = walk32(read, mode, TABLES[0], la, acc, cpl)
            if res is None:
                obs.kind[i], obs.vector[i] = GP, 13
            else:
                fault = res if isinstance(res, PageFault) else self.check(res, rights_mode(mode), la, acc, cpl, ac)
                if fault is not None:
                    obs.kind[i], obs.vector[i], obs.errcode[i], obs.cr2[i] = PF, 14, fault.errcode, fault.cr2
                else:
                    assert not isinstance(res, PageFault)
                    for addr, bits2 in accessed_dirty(res, acc).items():
                        after[addr] |= bits2
                    obs.kind[i] = ALLOWED
                    obs.value[i] = 0 if acc == 2 else pattern(res.pa(la) & ~7)
            obs.ad[i] = _ad_back(items, i, after)
        return obs


def _ad_back(items: Items, i: int, mem: dict[int, int]) -> int:
    """The A/D bits of access i's tree entries in ``mem`` (packed as ``Observed.ad``)."""
    ad = 0
    for k in range(items.levels):
        table, idx = items.slot(k, i)
        addr = table + items.entry_size * idx
        if addr in mem:
            ad |= ((mem[addr] >> 5) & 3) << (2 * (items.levels - k - 1))
    return ad


# ---------------------------------------------------------------------------------------------
# the test kernel (qemu-system, bochs)

class KernelRunner(SweepRunner):
    """The test kernel enumerates: per batch the host sends the runs of consecutive combination
    indexes (``z levels first count``), the kernel decodes each index into its tree and access as
    ``sweepspace.build`` does, runs it and writes one 16-byte record (``testkernel_wire.SWEEP_RECORD``);
    the host, knowing every combination from its index, parses the records into ``Observed``.  Before
    the first batch of a paging depth the kernel's decoding is checked against ``build`` on a sample of
    indexes (the ``y`` command): a kernel that enumerates another space stops the sweep."""

    pipelined = True        # run() waits on the guest: the sweep overlaps it with judging
    most = 16384            # combinations per exchange (the shared memory's answer area holds 32,768 records)
    sample = 64             # indexes whose decoding is compared with build() per paging depth

    def __init__(self, target: Any) -> None:
        self.target = target
        self.name = target.name
        f = target.facts()
        self.facts = {k: f[k] for k in FEATURES}
        self.facts["impl_version"] = str(f.get("impl_version", ""))
        self.checked: set[int] = set()

    def setup(self, levels: int) -> list[str]:
        """Reset, then boot at the batch's paging depth (everything else the kernel sets per access)."""
        cr4 = 0x20 | (0x1000 if levels == 5 else 0)
        return [self.target.reset_line(), f"B {0x80010001:x} {cr4:x} {0xD00 if self.facts['nx'] else 0x500:x}"]

    def check_decoding(self, items: Items) -> None:
        """The kernel's decoding of a sample of indexes (the first and last of this batch, and random
        ones) against ``sweepspace.build``: the same control registers, address, access and entries."""
        space = Space(items.paging if items.levels not in (4, 5) else f"{items.levels}level")
        rng = np.random.default_rng(len(self.checked) + items.levels)
        idx = np.unique(np.concatenate([items.index[:1], items.index[-1:],
                                        rng.integers(0, space.size, self.sample)]))
        replies = self.target.guest_exchange(self.setup(items.levels) + [f"y {items.levels:x} {int(i):x}" for i in idx])
        want = decoded_args(build(space, idx))
        for i, reply, row in zip(idx.tolist(), replies[2:], want):
            got = reply.split()
            if got[:1] != ["v"] or [int(x, 16) for x in got[1:]] != row:
                raise TargetError(f"the test kernel decodes combination {i} of the {space.mode} space as "
                                  f"{reply!r}, sweepspace.build as {' '.join(f'{v:x}' for v in row)!r}: "
                                  "the kernel and the host enumerate different spaces")
        self.checked.add(items.levels)

    def run(self, items: Items) -> Observed:
        if items.levels not in self.checked:
            self.check_decoding(items)
        parts = []
        try:
            for lo in range(0, len(items), self.most):
                runs = sweep_runs(items.index[lo:lo + self.most])
                request = list(zip(sweep_request(items.levels, runs), (n for _, n in runs)))
                parts.append(self.target.guest_records(self.setup(items.levels), request, SWEEP_RECORD_SIZE))
        except TargetError:
            raise
        except Exception as e:      # the guest died (crash or hang): the sweep stops at its checkpoint
            raise TargetError(f"the {self.name} guest stopped answering during a sweep batch: "
                              f"{getattr(e, 'message', e)}") from None
        return parse_records(b"".join(parts), items)


def decoded_args(items: Items) -> list[list[int]]:
    """Per access, what the kernel's ``y`` command answers for its index: root, CR0, CR4, EFER, PKRU,
    the address, the tree's address, op | cpl << 4 | ac << 8, then the entries, top first."""
    how = (items.acc.astype(np.uint64) | (items.cpl.astype(np.uint64) << np.uint64(4))
           | (items.ac.astype(np.uint64) << np.uint64(8)))
    n = len(items)
    cols = np.column_stack([np.full(n, TABLES[0], dtype=np.uint64), items.cr0, items.cr4, items.efer, items.pkru,
                            items.la, items.tla, how, items.entries]).astype(np.uint64)
    return cols.tolist()


_RECORD = np.dtype(SWEEP_RECORD)


def parse_records(data: bytes, items: Items) -> Observed:
    """The kernel's records (``testkernel_wire.SWEEP_RECORD``) of these accesses -> ``Observed``: CR2 for
    a #PF, the qword for an allowed load or store; a refused access is REFUSED (never judged)."""
    n = len(items)
    if len(data) != n * SWEEP_RECORD_SIZE:
        raise TargetError(f"the test kernel answered {len(data)} bytes for {n} sweep records")
    rec = np.frombuffer(data, dtype=_RECORD)
    kind = rec["kind"]
    if (kind > SWEEP_ERROR).any():
        raise TargetError(f"a sweep record of unknown kind {int(kind.max())} from the test kernel")
    if (kind == SWEEP_ERROR).any():
        i = int(np.flatnonzero(kind == SWEEP_ERROR)[0])
        raise TargetError(f"the test kernel could not stage combination {int(items.index[i])} of the sweep "
                          "(a harness bug: its tree or control state)")
    obs = Observed.empty(n)
    vec = rec["vector"].astype(np.int16)
    ok, exc = kind == SWEEP_OK, kind == SWEEP_EXC
    obs.kind = np.where(ok, ALLOWED, np.where(~exc, REFUSED, np.where(vec == 14, PF, np.where(vec == 13, GP, OTHER)))
                        ).astype(np.uint8)
    obs.vector = np.where(exc, vec, -1).astype(np.int16)
    obs.errcode = np.where(exc, rec["errcode"], 0).astype(np.uint32)
    obs.cr2 = np.where(exc & (vec == 14), rec["value"], np.uint64(0)).astype(np.uint64)
    obs.value = np.where(ok, rec["value"], np.uint64(0)).astype(np.uint64)
    obs.ad = np.where(kind == SWEEP_REFUSED, 0, rec["ad"]).astype(np.uint16)
    return obs


def records_of(obs: Observed) -> bytes:
    """``Observed`` as the kernel's records (the inverse of ``parse_records``, for tests and tools)."""
    rec = np.zeros(obs.kind.shape[0], dtype=_RECORD)
    ok, refused = obs.kind == ALLOWED, obs.kind == REFUSED
    rec["kind"] = np.where(ok, SWEEP_OK, np.where(refused, SWEEP_REFUSED, SWEEP_EXC))
    rec["vector"] = np.where(ok | refused, 0xFF, obs.vector.astype(np.int64) & 0xFF)
    rec["ad"] = obs.ad
    rec["errcode"] = obs.errcode
    rec["value"] = np.where(ok, obs.value, np.where(obs.kind == PF, obs.cr2, np.uint64(0)))
    return rec.tobytes()


# ---------------------------------------------------------------------------------------------
# unicorn (qemu)

class UnicornRunner(SweepRunner):
    name = "qemu"
    modes = ("4level", "5level", "pae", "32bit")
    legacy = None           # the 32-bit protected-mode machine (targets/sweep_legacy.py), made when needed

    def __init__(self, target: Any) -> None:
        from . import qemu as q
        self.q = q
        self.target = target
        self.m = target.machine
        f = target.facts()
        self.facts = {k: f[k] for k in FEATURES}
        self.facts["impl_version"] = str(f.get("impl_version", ""))

    def run(self, items: Items) -> Observed:
        if items.paging in LEGACY:
            from .sweep_legacy import Legacy, run_legacy
            if self.legacy is None:
                self.legacy = Legacy(self.m.off_err)
            return run_legacy(self.legacy, items)
        q, m = self.q, self.m
        x = q._x
        uc = m.uc
        n = len(items)
        obs = Observed.empty(n)
        m.reset()
        levels = items.levels
        cr4_0 = 0x20 | (0x1000 if levels == 5 else 0)
        o = m.call("boot", (0x80010001, cr4_0, 0xD00 if self.facts["nx"] else 0x500))
        if o.errno:
            raise TargetError("the qemu target refused the sweep's paging mode")
        cur = (None, None, None, None)
        slots = {fetch: [(TABLES[k], index_at(levels - k, levels, fetch)) for k in range(levels)]
                 for fetch in (False, True)}
        root = TABLES[0]
        m.root_entry(root, levels == 5)
        m.touched.update(TABLES[:levels])
        cr0s, cr4s, efers, pkrus = (items.cr0.tolist(), items.cr4.tolist(), items.efer.tolist(), items.pkru.tolist())
        las, accs, cpls, acs = items.la.tolist(), items.acc.tolist(), items.cpl.tolist(), items.ac.tolist()
        written = items.written.tolist()
        entries = items.entries.tolist()
        for i in range(n):
            regs = (cr0s[i], cr4s[i], efers[i], pkrus[i])
            if regs != cur:
                uc.reg_write(x.UC_X86_REG_CR4, regs[1])
                uc.reg_write(x.UC_X86_REG_MSR, (q.MSR_EFER, regs[2] | 0x400))
                uc.reg_write(x.UC_X86_REG_CR0, regs[0])
                m.dirty = True
                if regs[1] & (1 << 22) and regs[3] != cur[3]:
                    m._priv(q.WRPKRU, rax=regs[3], rcx=0, rdx=0)
                cur = regs
            where = []
            for k in range(levels):
                if written[i] >> (levels - k - 1) & 1:
                    table, idx = slots[accs[i] == 2][k]
                    m._q(table + 8 * idx, entries[i][k])
                    where.append((k, table + 8 * idx))
            uc.reg_write(x.UC_X86_REG_CR3, root)
            o = m.call("access", (las[i], accs[i], cpls[i], acs[i]))
            ad = 0
            for k, pa in where:
                v = int.from_bytes(uc.mem_read(pa, 8), "little")
                ad |= ((v >> 5) & 3) << (2 * (levels - k - 1))
                m._q(pa, pattern(pa))
            obs.ad[i] = ad
            if o.errno:
                obs.kind[i] = REFUSED
            elif o.signal is None:
                obs.kind[i] = ALLOWED
                obs.value[i] = o.value or 0
            else:
                d = dict(o.detail)
                v = VECTOR_OF.get(o.signal, -1)
                obs.vector[i] = v
                obs.kind[i] = PF if v == 14 else GP if v == 13 else OTHER
                obs.errcode[i] = d.get("errcode", 0)
                obs.cr2[i] = d.get("cr2", 0)
        return obs


def runner_for(target: Any) -> SweepRunner:
    """The sweep runner of a target made by ``targets.registry.make_target``."""
    from .model import ModelTarget
    if isinstance(target, ModelTarget):
        return ModelRunner()
    from .qemu_system import TestKernelTarget
    if isinstance(target, TestKernelTarget):
        return KernelRunner(target)
    try:
        from .qemu import QemuTarget
    except ImportError:     # pragma: no cover
        QemuTarget = None   # type: ignore[assignment,misc]
    if QemuTarget is not None and isinstance(target, QemuTarget):
        return UnicornRunner(target)
    from .kvm import KvmTarget
    if isinstance(target, KvmTarget):
        from .kvm.sweep import KvmRunner
        return KvmRunner(target)
    raise TargetError(f"the {getattr(target, 'name', target)} target has no sweep runner yet "
                      "(sweeps run on model, qemu, qemu-system, bochs and kvm)")


__all__ = ["SweepRunner", "ModelRunner", "KernelRunner", "UnicornRunner", "runner_for", "parse_records", "records_of",
           "decoded_args"]
