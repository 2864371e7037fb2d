"""Sweep runners: one access per tree for a batch of ``memspec.sweepspace.Items``, per target.

* ``KernelRunner`` (``qemu-system``, ``bochs``): the test kernel's ``Z`` command, one line per
  access, whole batches per round trip (shared memory under QEMU, the serial line under Bochs):
  the kernel loads the control state, writes the tree, reloads CR3, runs the access and reads
  the A/D flags back (``targets/testkernel/README.md``, Sweeps).
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
from memspec.sweepspace import ALLOWED, GP, LEGACY, OTHER, PF, REFUSED, TABLES, Items, Observed, index_at

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
    pipelined = True        # run() waits on the guest: the sweep overlaps it with judging

    def __init__(self, target: Any) -> None:
        self.target = target
        self.name = target.name
        f = target.facts()
        self.facts = {k: f[k] for k in FEATURES}
        self.facts["impl_version"] = str(f.get("impl_version", ""))

    def lines(self, items: Items) -> list[str]:
        """One ``Z`` command per access, every number as 16 hex digits (formatted for the whole batch
        at once: the host's share of a sweep's time is mostly text)."""
        how = (items.acc.astype(np.uint64) | (items.cpl.astype(np.uint64) << np.uint64(4))
               | (items.ac.astype(np.uint64) << np.uint64(8)))
        n = len(items)
        cols = np.column_stack([np.full(n, TABLES[0], dtype=np.uint64), items.cr0, items.cr4, items.efer, items.pkru,
                                items.la, items.tla, how, items.entries]).astype(np.uint64)
        return hex_lines(b"Z", cols)

    def run(self, items: Items) -> Observed:
        t = self.target
        # the paging depth of the batch, everything else per access
        boot = f"B {0x80010001:x} {0x20 | (0x1000 if items.levels == 5 else 0):x} {0xD00 if self.facts['nx'] else 0x500:x}"
        try:
            replies = t.guest_exchange([t.reset_line(), boot] + self.lines(items))
        except TargetError:
            raise
        except Exception as e:      # the guest died (crash or hang): the sweep stops at its checkpoint
            raise TargetError(f"the {self.name} guest stopped answering during a sweep batch: "
                              f"{getattr(e, 'message', e)}") from None
        if replies[:2] != ["k", "k"]:
            raise TargetError(f"the test kernel refused the sweep's set-up: {replies[:2]}")
        return parse_replies(replies[2:], len(items))


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_UNHEX = np.zeros(256, dtype=np.uint64)
_UNHEX[np.frombuffer(b"0123456789", dtype=np.uint8)] = np.arange(10, dtype=np.uint64)
_UNHEX[np.frombuffer(b"abcdef", dtype=np.uint8)] = np.arange(10, 16, dtype=np.uint64)


# every byte as its two hex digits, as one little-endian uint16 (the first digit in the low byte)
_PAIRS = (_HEX[np.arange(256) >> 4].astype(np.uint16) | (_HEX[np.arange(256) & 15].astype(np.uint16) << 8))


def hex_lines(cmd: bytes, cols: np.ndarray) -> list[str]:
    """``cmd`` then every column of each row as a space and its hex digits (no leading zeros), one line
    per row: formatted for the whole batch at once (the host's share of a sweep's time is mostly text,
    and the guest parses every character, so short lines are worth it)."""
    n, f = cols.shape
    cols = np.ascontiguousarray(cols, dtype=np.uint64)
    big = cols.astype(">u8").view(np.uint8).reshape(n, f, 8)      # most significant first
    digits = _PAIRS[big].view(np.uint8).reshape(n, f, 16)
    row = np.empty((n, len(cmd) + 17 * f + 1), dtype=np.uint8)
    row[:, :len(cmd)] = np.frombuffer(cmd, dtype=np.uint8)
    body = row[:, len(cmd):-1].reshape(n, f, 17)
    body[:, :, 0] = ord(" ")
    body[:, :, 1:] = digits
    row[:, -1] = ord("\n")
    # keep the space and the last ``width`` digits of every number (at least one)
    width = np.ones((n, f), dtype=np.int8)
    for k in range(1, 16):
        width += cols >= np.uint64(1 << (4 * k))
    keep = np.ones(row.shape, dtype=bool)
    kb = keep[:, len(cmd):-1].reshape(n, f, 17)
    kb[:, :, 1:] = np.arange(16, dtype=np.int8)[None, None, :] >= (16 - width)[:, :, None]
    return row[keep].tobytes().decode("ascii").splitlines()


# the kernel's answer to Z: o|x VECTOR(2) ERRCODE(8) CR2(16) AD(3) VALUE(16)
_REPLY = 51
_FIELDS = {"vector": (2, 4), "errcode": (5, 13), "cr2": (14, 30), "ad": (31, 34), "value": (35, 51)}


def parse_replies(replies: list[str], n: int) -> Observed:
    obs = Observed.empty(n)
    if len(replies) != n:
        raise TargetError(f"the test kernel answered {len(replies)} of {n} sweep commands")
    odd = [i for i, r in enumerate(replies) if len(r) != _REPLY or r[0] not in "ox"]
    for i in odd:
        if replies[i][:1] not in ("r", "e"):
            raise TargetError(f"unexpected answer from the test kernel to a sweep command: {replies[i]!r}")
    text = "".join(r if len(r) == _REPLY and r[0] in "ox" else "r" * _REPLY for r in replies)
    raw = np.frombuffer(text.encode("ascii"), dtype=np.uint8).reshape(n, _REPLY)

    def field(name: str) -> np.ndarray:
        lo, hi = _FIELDS[name]
        v = np.zeros(n, dtype=np.uint64)
        for j in range(lo, hi):
            v = (v << np.uint64(4)) | _UNHEX[raw[:, j]]
        return v

    vec = field("vector").astype(np.int16)
    ok = raw[:, 0] == ord("o")
    obs.kind = np.where(ok, ALLOWED, np.where(vec == 14, PF, np.where(vec == 13, GP, OTHER))).astype(np.uint8)
    obs.vector = np.where(ok, -1, vec).astype(np.int16)
    obs.errcode = field("errcode").astype(np.uint32)
    obs.cr2 = field("cr2")
    obs.ad = field("ad").astype(np.uint16)
    obs.value = field("value")
    if odd:
        bad = np.array(odd)
        obs.kind[bad] = REFUSED
        obs.vector[bad], obs.errcode[bad], obs.cr2[bad], obs.ad[bad], obs.value[bad] = -1, 0, 0, 0, 0
    return obs


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


__all__ = ["SweepRunner", "ModelRunner", "KernelRunner", "UnicornRunner", "runner_for", "parse_replies"]
