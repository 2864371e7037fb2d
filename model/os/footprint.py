"""What a step of the os model touched: the footprint its invariants are checked over.

The state's tables record their own changes as they happen, so no rule has to say what it
changed: a process's page tables, private pages and TLB (``PageTable``: the addresses set or
removed, and the pages that gained or lost a mapping there), its VMA tree (``VmaTree``: the
ranges set or removed, and the objects mapped there before or after), its descriptors and the
machine's objects and names (``ObjectRefs``: the objects named).  ``model.pages.FrameTable``
records the pages that got or gave up a frame.  ``model.invariants.check_step`` reads these and
empties them; a change of the processes themselves (fork, exit) makes the next check a full one.

A table also keeps the reverse map's two counts on each page (``Page.refs``: the private-page
entries and page-cache PTEs referring to it, what its mapcount must be; ``Page.ptes``: the PTEs
mapping it), so checking one page's mapcount does not scan every process.

Worked example: ``store(a, 1)`` on an untouched private page sets ``mm.anon[a]`` and
``mm.pte[a]``: the footprint is the address ``a`` and the new page (refs 1, ptes 1); the
incremental check looks at that address and that page only.
"""

from __future__ import annotations

from typing import Any

from ..intervals import FREE, NOT_ONE, IntervalMap
from ..pages import Page

ANON, PTE, TLB = 0, 1, 2


class PageTable(dict):
    """A page-address-keyed table of one process (``anon``: Page values; ``pte``/``tlb``: Pte
    values) that records the addresses it changes into ``addrs`` and the pages whose mappings
    change into ``pages``, keeping each page's ``refs`` and ``ptes`` counts."""

    __slots__ = ("addrs", "pages", "kind")

    def __init__(self, addrs: set[int] | None = None, pages: set[Page] | None = None, kind: int = ANON) -> None:
        super().__init__()
        self.addrs = addrs if addrs is not None else set()
        self.pages = pages if pages is not None else set()
        self.kind = kind

    def _take(self, v: Any) -> None:
        kind = self.kind
        if kind == ANON:
            v.refs += 1
            self.pages.add(v)
        elif kind == PTE:
            p = v.page
            if isinstance(p, Page):
                p.ptes += 1
                if p.kind != "anon":
                    p.refs += 1
                self.pages.add(p)

    def _drop(self, v: Any) -> None:
        kind = self.kind
        if kind == ANON:
            v.refs -= 1
            self.pages.add(v)
        elif kind == PTE:
            p = v.page
            if isinstance(p, Page):
                p.ptes -= 1
                if p.kind != "anon":
                    p.refs -= 1
                self.pages.add(p)

    def __setitem__(self, k: int, v: Any) -> None:
        old = dict.get(self, k)
        if old is not None:
            self._drop(old)
        dict.__setitem__(self, k, v)
        self._take(v)
        self.addrs.add(k)

    def __delitem__(self, k: int) -> None:
        old = dict.pop(self, k)
        self._drop(old)
        self.addrs.add(k)

    def pop(self, k: int, *default: Any) -> Any:
        if dict.__contains__(self, k):
            old = dict.pop(self, k)
            self._drop(old)
            self.addrs.add(k)
            return old
        if default:
            return default[0]
        raise KeyError(k)

    def popitem(self) -> tuple[int, Any]:
        k, old = dict.popitem(self)
        self._drop(old)
        self.addrs.add(k)
        return k, old

    def setdefault(self, k: int, default: Any = None) -> Any:
        if dict.__contains__(self, k):
            return dict.__getitem__(self, k)
        self[k] = default
        return default

    def update(self, *args: Any, **kw: Any) -> None:
        for k, v in dict(*args, **kw).items():
            self[k] = v

    def clear(self) -> None:
        for k, v in list(self.items()):
            self._drop(v)
            self.addrs.add(k)
        dict.clear(self)

    def __reduce__(self) -> tuple:
        # a copy (copy.deepcopy, pickle) holds the entries as they are: each page's counts are copied
        # with it, not taken again through ``__setitem__``
        return _page_table, (type(self), dict(self), self.addrs, self.pages, self.kind)


def _page_table(cls: type, entries: dict, addrs: set[int], pages: set[Page], kind: int) -> PageTable:
    t = cls(addrs, pages, kind)
    dict.update(t, entries)
    return t


class VmaTree(IntervalMap):
    """A process's VMA tree that records the ranges it changes into ``ranges`` and the objects
    mapped there, before and after, into ``objs``."""

    __slots__ = ("ranges", "objs", "known_len")

    def __init__(self, ranges: list[tuple[int, int]] | None = None, objs: set[int] | None = None) -> None:
        super().__init__()
        self.ranges = ranges if ranges is not None else []
        self.objs = objs if objs is not None else set()
        # the number of VMAs after the last recorded change: a tree whose length differs was changed
        # behind its methods' back (a deliberately broken model), and is checked whole
        self.known_len = 0

    def changed_unrecorded(self) -> bool:
        return len(self) != self.known_len

    def remove(self, start: int, end: int) -> list:
        if start >= end:
            return []
        hits = self.overlapping(start, end)         # IntervalMap.remove, and the objects it unmapped
        self.remove_found(start, end, hits)
        return hits

    def remove_found(self, start: int, end: int, hits: list) -> None:
        """``remove(start, end)`` where ``hits`` is ``overlapping(start, end)``, asked since the tree's
        last change (a rule that found the range's VMAs to answer the call: not searched twice)."""
        if start >= end:
            return
        self.ranges.append((start, end))
        if hits:
            self._cut(hits, start, end)
            for _, _, v in hits:
                if v is not None and v.obj is not None:
                    self.objs.add(v.obj)

    def set_free(self, start: int, end: int, value: Any) -> None:
        """``set(start, end, value)`` over a range that holds no VMA (a mapping placed where the rule
        found no overlap): nothing to remove or replace."""
        if end <= start:
            return
        if value is not None and getattr(value, "obj", None) is not None:
            self.objs.add(value.obj)
        self.ranges.append((start, end))
        self._insert(start, end, value)

    def set(self, start: int, end: int, value: Any) -> None:
        if end <= start:
            return
        old = self._swap(start, end, value)
        if old is FREE:
            self.set_free(start, end, value)
            return
        if value is not None and getattr(value, "obj", None) is not None:
            self.objs.add(value.obj)
        if old is NOT_ONE:
            self.remove(start, end)
            self._insert(start, end, value)
            return
        # the one VMA of [start, end) replaced in place: recorded as remove + insert record it
        self.ranges.append((start, end))
        if old is not None and old.obj is not None:
            self.objs.add(old.obj)

    # the tree's two primitive changes, which set and remove go through, keep the count
    def _insert(self, start: int, end: int, value: Any) -> None:
        IntervalMap._insert(self, start, end, value)
        self.known_len += 1

    def _delete(self, start: int) -> None:
        IntervalMap._delete(self, start)
        self.known_len -= 1


class ObjectRefs(dict):
    """A table naming memory objects (the machine's objects by id, a process's descriptors, the
    shm names) that records every object it gains or loses a reference to into ``objs``."""

    __slots__ = ("objs", "by_key")

    def __init__(self, objs: set[int] | None = None, by_key: bool = False) -> None:
        super().__init__()
        self.objs = objs if objs is not None else set()
        self.by_key = by_key      # the key is the object's id (else the value names it)

    def _note(self, k: Any, v: Any) -> None:
        o = k if self.by_key else (v if isinstance(v, int) else getattr(v, "obj", None))
        if o is not None:
            self.objs.add(o)

    def __setitem__(self, k: Any, v: Any) -> None:
        if dict.__contains__(self, k):
            self._note(k, dict.__getitem__(self, k))
        dict.__setitem__(self, k, v)
        self._note(k, v)

    def __delitem__(self, k: Any) -> None:
        self._note(k, dict.pop(self, k))

    def pop(self, k: Any, *default: Any) -> Any:
        if dict.__contains__(self, k):
            v = dict.pop(self, k)
            self._note(k, v)
            return v
        if default:
            return default[0]
        raise KeyError(k)

    def popitem(self) -> tuple[Any, Any]:
        k, v = dict.popitem(self)
        self._note(k, v)
        return k, v

    def setdefault(self, k: Any, default: Any = None) -> Any:
        if dict.__contains__(self, k):
            return dict.__getitem__(self, k)
        self[k] = default
        return default

    def update(self, *args: Any, **kw: Any) -> None:
        for k, v in dict(*args, **kw).items():
            self[k] = v

    def clear(self) -> None:
        for k, v in list(self.items()):
            self._note(k, v)
        dict.clear(self)


__all__ = ["ANON", "PTE", "TLB", "PageTable", "VmaTree", "ObjectRefs"]
