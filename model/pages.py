"""Pages, frames and memory objects: what the os layer's address spaces map.

Linux's shapes, reduced to what is observable: a ``Page`` is a folio of one
base page (``struct page``): its contents, the frame (``pfn``) it occupies
while resident, its ``mapcount`` (how many PTEs map it, the rmap's count) and
its LRU bits.  A ``MemObject`` is an inode's page cache: a shmem object
(MAP_SHARED|MAP_ANONYMOUS memory, memfd, POSIX shared memory) or a regular
file.  A ``FrameTable`` hands out frames and knows which page owns each one.

Law (the frame invariant, ``memspec.inv.no-frame-owned-twice``): every
resident page owns exactly one frame and no frame is owned by two pages.
Worked example: after ``fork()`` a private page has mapcount 2 and one frame;
the first ``store`` in either process gives the writer a new page on a new
frame (``do_wp_page``) and drops the old page's mapcount to 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memspec.consts import PAGE_SIZE


@dataclass(eq=False, slots=True)
class Page:
    """One page of memory (Linux's struct page / folio of order 0)."""

    kind: str                       # "anon" (private, in an anon_vma) or "shmem"/"file" (page cache)
    data: bytearray | None = None   # None: all zero (not yet written)
    pfn: int | None = None          # the frame while resident; None when swapped out / not cached
    mapcount: int = 0               # PTEs mapping it (page_mapcount)
    dirty: bool = False             # modified since last written back (PG_dirty)
    referenced: bool = False        # the accessed bit the clock hand tests (PG_referenced)
    swap: int | None = None         # swap slot holding its contents while swapped out
    obj: int | None = None          # page cache: the object and offset it caches
    pgoff: int = 0
    node: int = 0                   # NUMA node of its frame
    lru_seq: int = 0                # position on its LRU list (lower: older)
    lazyfree: bool = False          # MADV_FREE'd and not written since (may be discarded clean)
    inherited: bool = False         # was shared copy-on-write by a fork at some point
    # the reverse map's counts, kept by the tables that refer to the page (model.os.footprint),
    # never by the rules: private-page entries plus page-cache PTEs (what mapcount must be), PTEs
    refs: int = 0
    ptes: int = 0

    def byte(self, off: int) -> int:
        return self.data[off] if self.data is not None else 0

    def put(self, off: int, value: int) -> None:
        if self.data is None:
            self.data = bytearray(PAGE_SIZE)
        self.data[off] = value & 0xFF

    def copy_data(self) -> bytearray | None:
        return bytearray(self.data) if self.data is not None else None


class _ZeroPage:
    """The shared zero page: what a read fault on untouched private anonymous memory maps
    (mm/memory.c do_anonymous_page, read case).  Read-only; owns no frame of ours."""

    __slots__ = ()
    kind = "zero"
    pfn = 0

    def byte(self, off: int) -> int:
        return 0

    def __repr__(self) -> str:
        return "ZERO_PAGE"


ZERO_PAGE = _ZeroPage()


@dataclass(eq=False, slots=True)
class MemObject:
    """An inode's memory: shmem (anonymous shared, memfd, POSIX shm) or a regular file.

    ``size`` is i_size in bytes.  ``pages`` is the page cache (resident or swapped
    shmem pages); ``disk`` holds a regular file's written-back contents.
    """

    id: int
    kind: str                        # "anon-shared", "memfd", "shm", "file"
    size: int
    name: str = ""
    mode: int = 0o600
    uid: int = 0
    linked: bool = False             # reachable by name (shm) -- unlinked objects live on while used
    pages: dict[int, Page] = field(default_factory=dict)
    disk: dict[int, bytearray] = field(default_factory=dict)
    opens: int = 0                   # open file descriptions (fd references)
    uncertain: set[int] = field(default_factory=set)   # pages a target may or may not have evicted

    @property
    def shmem(self) -> bool:
        return self.kind != "file"

    def npages(self) -> int:
        return (self.size + PAGE_SIZE - 1) // PAGE_SIZE


class FrameTable:
    """Frames of RAM (and slots of swap): allocation, ownership, the reverse map to pages."""

    def __init__(self, ram_pages: int, swap_pages: int, nodes: int = 1) -> None:
        self.ram_pages = ram_pages
        self.swap_pages = swap_pages
        self.nodes = max(1, nodes)
        self.owner: dict[int, Page] = {}
        self._free: list[int] = []
        self._next = 1                # pfn 0 is the zero page's stand-in
        self.swap_used: dict[int, Page] = {}
        self._next_slot = 1
        self.touched: set[Page] = set()   # pages that got or gave up a frame since the last check

    def used(self) -> int:
        return len(self.owner)

    def free_count(self) -> int:
        return self.ram_pages - len(self.owner)

    def alloc(self, page: Page, node: int = 0) -> int | None:
        """A free frame for ``page`` (seed step 4, frame selection), or None when RAM is full."""
        if len(self.owner) >= self.ram_pages:
            return None
        pfn = self._free.pop() if self._free else self._take()
        self.owner[pfn] = page
        self.touched.add(page)
        page.pfn = pfn
        page.node = node % self.nodes
        return pfn

    def _take(self) -> int:
        pfn = self._next
        self._next += 1
        return pfn

    def free(self, page: Page) -> None:
        self.touched.add(page)
        if page.pfn is not None and self.owner.get(page.pfn) is page:
            del self.owner[page.pfn]
            self._free.append(page.pfn)
        page.pfn = None

    def swap_alloc(self, page: Page) -> int | None:
        if len(self.swap_used) >= self.swap_pages:
            return None
        slot = self._next_slot
        self._next_slot += 1
        self.swap_used[slot] = page
        page.swap = slot
        return slot

    def swap_free(self, page: Page) -> None:
        if page.swap is not None:
            self.swap_used.pop(page.swap, None)
        page.swap = None
