"""The hw layer's model: an x86-64 CPU's paging, MMU checks, A/D updates and TLB (SDM Vol. 3A ch. 4).

``Paging`` is one logical processor, composed of one module per concern, each importing only
those below it (no cycle, tests/core/test_layering.py):

    paging_state         the state and the mechanics every rule shares (§2.5, §4.1, §4.10)
    paging_control       boot, MOV to CR0/CR3/CR4, WRMSR EFER, WRPKRU (§2.5, §4.1, §4.10.4.1)
    paging_invalidation  INVLPG, INVPCID and the TLB's law (§4.10.4)
    paging_access        what an access may give: walks, rights, #PF, stale translations (§4.5-4.7, §4.10)
    paging_ad            the entries' reads and writes, and what an access did: A/D, unsure bits (§4.8)

and ``model.segunit`` governs the segmentation calls.  Each call's ``expect`` names the clause
that decides it; ``access`` allows the walk of the current tables plus every stale walk the SDM
still permits (§4.10), and ``apply`` adopts what the target did.  A/D bits the model cannot pin
down (set on a walk that faulted, or when a cached translation may have been used) are tracked
as *unsure* bits and judged loosely when read back.

Worked example: PML4E/PDPTE/PDE user, PTE ``P|US`` (read-only) and CR0.WP = 1:
``access(la, ACC_WRITE, 0)`` -> #PF errcode ``P|W`` (sdm.access.wp-supervisor-write);
with WP = 0 the same write succeeds and sets D in the PTE (sdm.ad.dirty-on-write).
"""

from __future__ import annotations

from typing import Any

from memspec.calls import layer_calls
from memspec.records import Outcome

from .blame import matches
from .expect import Expect
from .paging_access import show
from .paging_ad import AccessedDirty
from .paging_control import ControlRegisters
from .paging_invalidation import Invalidation
from .paging_state import DEFAULT_FACTS
from .rules import Rule, Rules, compose
from .segunit import SEG_CALLS

# the hw calls this model governs itself; the segmentation calls are model.segunit's
_OWN_CALLS = frozenset(c.name for c in layer_calls("hw")) - SEG_CALLS


def _rules_of(cls: type) -> Rules:
    """The class's rules by call name: its ``_expect_<call>`` and ``_apply_<call>`` for every call it
    governs, composed and checked (a missing method or a wrong arity fails when the class is made).
    Taken from the class, so a subclass (a test's deliberately broken walker) that overrides one
    method has that method in its table."""
    return compose("hw", {n: Rule(getattr(cls, "_expect_" + n), getattr(cls, "_apply_" + n)) for n in sorted(_OWN_CALLS)},
                   lead=(1, 2), only=_OWN_CALLS, names=False)


def _dispatch(rules: Rules) -> tuple[dict[str, Any], dict[str, Any]]:
    """(call name -> its rule's expect, call name -> its rule's apply): the hw calls the model governs
    itself (the segmentation calls are not there: model.segunit's)."""
    return {n: r.expect for n, r in rules.items()}, {n: r.apply for n, r in rules.items()}


# what an access's Expect is made of (``Paging._lean_access``)
_ACCESS_PARTS = ("_outcome_of", "_candidates", "_explained", "_removed_outcomes", "_without_rights", "_entry_read",
                 "_is_harness_entry", "read", "mode", "root", "_harness_slot", "entry_blame", "_fresh_blame",
                 "_tlb_default", "_exercised", "_pk_also", "_expect_access", "explain")


class Paging(ControlRegisters, Invalidation, AccessedDirty):
    """One x86-64 logical processor's paging state (see the module docstring): the state is
    ``PagingState``'s, the rules its bases'."""

    procs: tuple[str, ...] = ()     # no processes at this layer (the judge's os-layer context is empty)

    RULES: Rules       # set below, and for each subclass when it is made

    # whether ``_expect_access`` may keep an access's outcome and Expect (``_access_memo``): only with
    # this class's own parts (a test's deliberately broken subclass decides afresh every time)
    _lean_access = True

    # the RULES' functions by call name, read by ``expect`` and ``apply`` (one dict lookup a call)
    _EXPECTS: dict[str, Any]
    _APPLIES: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.RULES = _rules_of(cls)
        cls._EXPECTS, cls._APPLIES = _dispatch(cls.RULES)
        cls._lean_access = all(getattr(cls, n) is getattr(Paging, n) for n in _ACCESS_PARTS)

    # -- LayerModel ----------------------------------------------------------

    def expect(self, proc: str, name: str, args: tuple) -> Expect:
        f = self._EXPECTS.get(name)
        if f is None:
            return self.seg.expect(name, args)      # SEG_CALLS
        return f(self, *args)

    def apply(self, proc: str, name: str, args: tuple, outcome: Outcome) -> None:
        f = self._APPLIES.get(name)
        if f is None:
            self.seg.apply(name, args, outcome)     # SEG_CALLS
            return
        f(self, outcome, *args)

    def bind(self, proc: str, name: str, result: str | None, outcome: Outcome) -> None:
        pass


Paging.RULES = _rules_of(Paging)
Paging._EXPECTS, Paging._APPLIES = _dispatch(Paging.RULES)


def new_model(facts: dict) -> Paging:
    return Paging(facts)


__all__ = ["Paging", "new_model", "DEFAULT_FACTS", "matches", "show"]

