"""The outcomes and checks the phys allocators' rules share.

A phys rule (``model.rules.Rule``) is two plain functions of the phys model:
``expect(m, *args) -> Expect`` (what the clauses allow now, each naming its clause) and
``apply(m, outcome, *args)`` (adopt an allowed outcome as what happened; ``None`` when the
call changes nothing).  Each allocator module (``buddy``, ``slab``, ``vmalloc``, ``dma``,
``numa``, ``heap``, ``gc``) exports its table as ``RULES``; ``model.phys`` composes them
with ``model.rules.compose``.

Worked example: ``checked("linux.buddy.alloc-from-free", OK0, "a free block", not_failed(...))``
accepts an outcome only if every check passes, and a refusal names the first failing
check's clause.
"""

from __future__ import annotations

from typing import Callable

from memspec.records import Outcome

from .expect import Expect

OK0 = Outcome(value=0)
K_ENOMEM = Outcome(value=-1, errno="ENOMEM")
K_EINVAL = Outcome(value=-1, errno="EINVAL")
K_EFAULT = Outcome(value=-1, errno="EFAULT")
NULL_ENOMEM = Outcome(value=0, errno="ENOMEM")
NULL_EINVAL = Outcome(value=0, errno="EINVAL")

Check = tuple[str, Callable[[Outcome], str | None]]


def checked(clause: str, default: Outcome, describe: str, *checks: Check, impl_defined: bool = False) -> Expect:
    """An Expect whose outcome must pass every check; a refusal blames the first failing check's clause."""
    def first(o: Outcome) -> tuple[str, str] | None:
        for cid, f in checks:
            why = f(o)
            if why is not None:
                return cid, why
        return None

    def predicate(o: Outcome) -> str | None:
        bad = first(o)
        return None if bad is None else f"expected {describe}; {bad[1]}"

    def blame(o: Outcome) -> str:
        bad = first(o)
        return bad[0] if bad else clause

    return Expect(clause, default, describe, predicate=predicate, impl_defined=impl_defined, blame_by=blame,
                  covers=tuple(dict.fromkeys(cid for cid, _ in checks if cid)))


def not_failed(clause: str, what: str) -> Check:
    return (clause, lambda o: None if o.ok and o.value is not None and o.value != -1 else
            f"{what} was available, so the call may not fail; observed {o.describe()}")


def unknown(clause: str, why: str) -> Expect:
    return Expect(clause, Outcome(), why, unknown=True)


def is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()
