"""Deliberately broken segmentation units: the model with one SDM rule broken, run as a target.

Each must be caught by the judge (the correct model) with a failing ``sdm.seg.*`` clause.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from memspec.model import seg
from memspec.model.paging import Paging
from memspec.model.seg import LONG, REAL, SegFault, SegReg
from memspec.model.segunit import SegUnit
from memspec.program import Call
from memspec.records import Observation, Outcome
from memspec.targets.base import Session, Target


class IgnoresGranularity(SegUnit):
    """Takes the 20-bit limit field as the limit whatever G says."""

    def _load(self, sreg, selector, cpl):
        r = super()._load(sreg, selector, cpl)
        if isinstance(r, SegReg) and r.granular:
            return replace(r, limit=r.limit >> 12)
        return r


class ExpandDownAsUp(SegUnit):
    """Checks an expand-down segment's offsets as if it expanded up."""

    def _access(self, reg, sreg, offset, size, op):
        return super()._access(replace(reg, expand_down=False), sreg, offset, size, op)


class NoA20Wrap(SegUnit):
    """Never masks bit 20 in real-address mode (A20 always enabled)."""

    def _physical(self, la, i):
        return la + i if self.mode == REAL else super()._physical(la, i)


class ErrcodeKeepsRpl(SegUnit):
    """Pushes the whole selector (RPL and TI included) as the error code of a failed load."""

    def _load(self, sreg, selector, cpl):
        r = super()._load(sreg, selector, cpl)
        if isinstance(r, SegFault) and r.errcode:
            return SegFault(r.vector, selector, r.clause)
        return r


class LimitChecksInLongMode(SegUnit):
    """Applies the protected-mode limit check in 64-bit mode too."""

    def _access(self, reg, sreg, offset, size, op):
        if self.mode == LONG and not reg.null and not seg.limit_ok(reg, offset, size):
            return SegFault("#SS" if sreg == seg.SS else "#GP", 0, "sdm.seg.long.no-limit")
        return super()._access(reg, sreg, offset, size, op)


class StackFaultAsGp(SegUnit):
    """Raises #GP(0), not #SS(0), for a limit violation through SS."""

    def _access(self, reg, sreg, offset, size, op):
        r = super()._access(reg, sreg, offset, size, op)
        if isinstance(r, SegFault) and r.vector == "#SS":
            return SegFault("#GP", r.errcode, r.clause)
        return r


class ConformingPrivilegeChecked(SegUnit):
    """Applies the DPL >= max(CPL, RPL) check to conforming code segments as well."""

    def _load(self, sreg, selector, cpl):
        r = super()._load(sreg, selector, cpl)
        if isinstance(r, SegReg) and r.code and not r.null and sreg != seg.SS and max(cpl, selector & 3) > r.dpl:
            return SegFault("#GP", selector & 0xFFFC, "sdm.seg.load.data-privilege-gp")
        return r


class NotPresentAsGp(SegUnit):
    """Raises #GP(selector), not #NP/#SS(selector), for a not-present descriptor."""

    def _load(self, sreg, selector, cpl):
        r = super()._load(sreg, selector, cpl)
        if isinstance(r, SegFault) and r.vector in ("#NP", "#SS") and r.errcode:
            return SegFault("#GP", r.errcode, r.clause)
        return r


class RereadsDescriptor(SegUnit):
    """Uses the descriptor in memory on every access instead of the register's hidden part."""

    def _access(self, reg, sreg, offset, size, op):
        if sreg in self.loaded and self.mode != REAL:
            index, _ = self.loaded[sreg]
            fresh = self._load(sreg, reg.selector, 0)
            if isinstance(fresh, SegReg):
                reg = fresh
        return super()._access(reg, sreg, offset, size, op)


class ReadOnlyWritable(SegUnit):
    """Lets writes through read-only data segments."""

    def _access(self, reg, sreg, offset, size, op):
        return super()._access(replace(reg, writable=True) if not reg.code else reg, sreg, offset, size, op)


BROKEN = [IgnoresGranularity, ExpandDownAsUp, NoA20Wrap, ErrcodeKeepsRpl, LimitChecksInLongMode, StackFaultAsGp,
          ConformingPrivilegeChecked, NotPresentAsGp, RereadsDescriptor, ReadOnlyWritable]


class _Session(Session):
    def __init__(self, cls: type[SegUnit], facts: dict[str, Any]):
        self.model = Paging(facts)
        self.model.seg = cls(self.model.facts)

    def call(self, call: Call, args: tuple[int | str, ...]) -> Outcome:
        o = self.model.expect("main", call.name, args).default
        self.model.apply("main", call.name, args, o)
        return o

    def observe(self) -> Observation:
        return Observation(extra=tuple(sorted(self.model.observe().items())))


class BrokenSegTarget(Target):
    layers = ("hw",)
    capabilities = frozenset({"segmentation"})

    def __init__(self, cls: type[SegUnit], facts: dict[str, Any] | None = None):
        self.cls = cls
        self.name = f"broken-{cls.__name__}"
        self._facts = facts or {}

    def facts(self) -> dict[str, Any]:
        return dict(self._facts)

    def session(self, layer: str = "hw") -> _Session:
        return _Session(self.cls, self._facts)


__all__ = ["BROKEN", "BrokenSegTarget"]
