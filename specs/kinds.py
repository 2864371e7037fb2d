"""The kind of each argument, read from the typed call table: what a generator, a mutator and a
shrinker may do with it.

``memspec/calls*.py`` declares every parameter with a name and a kind: a constant group
(``prot``, ``map``, ``pte``, ``gfp``, ...), ``str``, or ``int``.  An ``int`` parameter is further
told apart by its name, as the call table's documentation names them: an address (``addr``,
``old_addr``, ``table``, ``frame``, ... -- page-aligned values are the simple ones), a size
(``length``, ``size``, ... -- one page is the simple one) or a plain number (zero is simplest).

=========  ==================================================  ==============================
kind       what it is                                          simpler is
=========  ==================================================  ==============================
flags      constants of one group or-ed together               fewer constants (fewer bits)
str        a string (names, paths)                             shorter
addr       a virtual, physical or guest-physical address       page-aligned, then earlier
size       a length in bytes                                   one page, then whole pages
int        any other number (orders, indices, values, fds)     nearer zero
=========  ==================================================  ==============================
"""

from __future__ import annotations

from memspec.calls import CallSpec
from memspec.consts import GROUPS

ADDRESSES = frozenset({"addr", "old_addr", "new_addr", "ptr", "obj", "handle", "table", "frame", "root", "base",
                       "gcr3", "target"})
SIZES = frozenset({"length", "size", "old_size", "new_size", "capacity", "soft"})
KINDS = ("flags", "str", "addr", "size", "int")


def kind_of(spec: CallSpec, i: int) -> str:
    """The kind of ``spec``'s parameter number ``i`` (one of ``KINDS``)."""
    p = spec.params[i]
    if p.kind == "str":
        return "str"
    if p.kind in GROUPS:
        return "flags"
    if p.name in ADDRESSES:
        return "addr"
    if p.name in SIZES:
        return "size"
    return "int"


def group_of(spec: CallSpec, i: int) -> dict[str, int]:
    """The constants a flags parameter draws from (empty for the other kinds)."""
    return GROUPS.get(spec.params[i].kind, {})


__all__ = ["ADDRESSES", "SIZES", "KINDS", "kind_of", "group_of"]
