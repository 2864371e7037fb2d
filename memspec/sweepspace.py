"""The permission space of the x86 walk, as a sweep enumerates it: dimensions, a strict filter,
an index <-> combination bijection, and the batch of accesses a range of indexes stands for.

A combination picks one value in every dimension (``DIMENSIONS``, outermost first): which
reserved bit or address variant, the leaf size, CR0.WP, CR4.SMEP/SMAP, EFER.NXE, the
protection-key state, CPL, EFLAGS.AC, the access type, then the flags of the *directory*
entry (the one above the leaf: the PDE of a 4 KiB page, the PDPTE of a 2 MiB page, the PML4E
of a 1 GiB page) and of the leaf.  Entries above the directory are ``P|RW|US`` (A clear).
Index ``i`` is the mixed-radix number whose last digit is the innermost dimension, so
consecutive indexes share their control state and a class's members can be counted::

    space = Space("4level")
    space.size                       # 11,796,480
    space.combination(0)             # {'variant': 'none', 'leaf': '4k', ..., 'leaf_nx': '0'}
    space.index_of(space.combination(12345)) == 12345
    f = parse_filter("cpl==3 and leaf==4k and not (access==fetch)", space)

Every access has its own tree (``Items``): tables at ``TABLES`` (root first), an address whose
index at every level is fixed (``la_of``; fetches use another PTE index and 4 KiB frame, so that
no store ever lands on a page an emulator has translated code from), leaf frames that hold the
harness pattern.  The
trees are independent: a target runs one access per tree, and the reference judges each
with ``model.walkbatch.walk_paths``.  The layout obeys ``memspec.calls_hw``'s rules (tables
and frames in program memory, top-level slot 1, never the harness's 511), so a combination
is also an ordinary hw program (``program_text``), replayable by ``memspec check``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from memspec.errors import UsageError

# --- the dimensions --------------------------------------------------------------------------

B = ("0", "1")


@dataclass(frozen=True)
class Dimension:
    name: str
    values: tuple[str, ...]
    doc: str


DIMENSIONS: tuple[Dimension, ...] = (
    Dimension("variant", ("none", "leaf51", "dir51", "leaf13", "noncanonical"),
              "none; bit 51 set in the leaf or the directory entry (reserved below MAXPHYADDR 52); bit 13 "
              "set in the leaf (reserved in a 2 MiB / 1 GiB leaf, a frame bit in a PTE); a non-canonical address"),
    Dimension("leaf", ("4k", "2m", "1g"), "the page size: a PTE, a PDE with PS = 1, a PDPTE with PS = 1"),
    Dimension("wp", B, "CR0.WP"),
    Dimension("smep", B, "CR4.SMEP"),
    Dimension("smap", B, "CR4.SMAP"),
    Dimension("nxe", B, "IA32_EFER.NXE"),
    Dimension("pk", ("off", "allow", "ad", "wd"),
              "protection keys: CR4.PKE = 0; PKE = 1 with PKRU = 0; PKRU.AD or PKRU.WD for the leaf's key 1"),
    Dimension("cpl", ("0", "3"), "the privilege level of the access"),
    Dimension("ac", B, "EFLAGS.AC"),
    Dimension("access", ("read", "write", "fetch"), "a load, a store, an instruction fetch"),
    Dimension("dir_p", B, "P of the directory entry"),
    Dimension("dir_rw", B, "R/W of the directory entry"),
    Dimension("dir_us", B, "U/S of the directory entry"),
    Dimension("dir_nx", B, "XD of the directory entry"),
    Dimension("leaf_p", B, "P of the leaf"),
    Dimension("leaf_rw", B, "R/W of the leaf"),
    Dimension("leaf_us", B, "U/S of the leaf"),
    Dimension("leaf_a", B, "A of the leaf (preset)"),
    Dimension("leaf_d", B, "D of the leaf (preset)"),
    Dimension("leaf_nx", B, "XD of the leaf"),
)
DIM = {d.name: d for d in DIMENSIONS}

# PAE paging (SDM §4.4): no canonical addresses, no 1 GiB pages, no protection keys; the PDPTE has
# no R/W, U/S or XD (they are reserved: a present PDPTE with one set is #GP at MOV CR3)
DIMENSIONS_PAE: tuple[Dimension, ...] = (
    Dimension("variant", ("none", "leaf51", "leaf62", "dir51", "leaf13", "pdpte_rsvd"),
              "none; bit 51 in the leaf or the directory entry (reserved below MAXPHYADDR 52); bit 62 in the "
              "leaf (reserved: bits 62:M, no protection-key bits); bit 13 in the leaf (reserved in a 2 MiB "
              "PDE, a frame bit in a PTE); bit 5 of the PDPTE (reserved: #GP at MOV CR3)"),
    Dimension("leaf", ("4k", "2m"), "the page size: a PTE, a PDE with PS = 1"),
    *(d for d in DIMENSIONS if d.name in ("wp", "smep", "smap", "nxe", "cpl", "ac", "access")),
    Dimension("dir_p", B, "P of the directory entry (the PDE of a 4 KiB page, the PDPTE of a 2 MiB page)"),
    Dimension("dir_rw", B, "R/W of the directory entry (reserved in a PDPTE)"),
    Dimension("dir_us", B, "U/S of the directory entry (reserved in a PDPTE)"),
    Dimension("dir_nx", B, "XD of the directory entry (reserved in a PDPTE)"),
    *(d for d in DIMENSIONS if d.name.startswith("leaf_")),
)

# 32-bit paging (SDM §4.3): 32-bit entries, no XD, no NXE, no protection keys; CR4.PSE = 1 (with PSE = 0
# a PDE's PS is ignored, which the model and its property test cover: a sweep would walk the 4 MiB
# frame as a page table)
DIMENSIONS_32: tuple[Dimension, ...] = (
    Dimension("variant", ("none", "leaf21", "leaf13"),
              "none; bit 21 flipped in the leaf (reserved in a 4 MiB PDE, a frame bit in a PTE); bit 13 in the leaf "
              "(physical address bit 32 of a 4 MiB page with PSE-36, a frame bit in a PTE)"),
    Dimension("leaf", ("4k", "4m"), "the page size: a PTE, a PDE with PS = 1 (then there is no directory entry)"),
    *(d for d in DIMENSIONS if d.name in ("wp", "smep", "smap", "cpl", "ac", "access")),
    Dimension("dir_p", B, "P of the PDE of a 4 KiB page"),
    Dimension("dir_rw", B, "R/W of the PDE of a 4 KiB page"),
    Dimension("dir_us", B, "U/S of the PDE of a 4 KiB page"),
    *(d for d in DIMENSIONS if d.name.startswith("leaf_") and d.name != "leaf_nx"),
)

# the paging modes a sweep names: their depth and dimensions
MODES = {"4level": 4, "5level": 5, "pae": 3, "32bit": 2}
MODE_DIMENSIONS = {"4level": DIMENSIONS, "5level": DIMENSIONS, "pae": DIMENSIONS_PAE, "32bit": DIMENSIONS_32}
LEGACY = ("pae", "32bit")          # outside IA-32e mode: no hw program form (the harness boots long mode)

# --- the layout of every tree ------------------------------------------------------------------

TABLES = (0x200000, 0x201000, 0x202000, 0x203000, 0x204000)     # root first
FRAME = {"4k": 0x300000, "2m": 0xA00000, "1g": 0x0, "4m": 0x800000}   # 1 GiB frame 0: the offset lands at 0x401008
FETCH_FRAME_4K = 0x310000
OFFSET = 0x8
PKEY = 1                                                         # the leaf's protection key
CR0_BASE, CR4_BASE, EFER_BASE = 0x80000001, 0x20, 0x500          # PG|PE, PAE, LME|LMA
CR0_WP, CR4_LA57, CR4_SMEP, CR4_SMAP, CR4_PKE, EFER_NXE = 1 << 16, 1 << 12, 1 << 20, 1 << 21, 1 << 22, 1 << 11
CR4_PSE_BIT, CR4_PAE_BIT = 1 << 4, 1 << 5
PKRU = {"off": 0, "allow": 0, "ad": 1 << (2 * PKEY), "wd": 2 << (2 * PKEY)}
ACC = {"read": 0, "write": 1, "fetch": 2}
ADDR_BITS = ((1 << 52) - 1) & ~0xFFF


def index_at(level: int, levels: int, fetch: bool = False) -> int:
    """The index every tree uses at ``level``: 1 at the top (slot 0 is left alone, 511 is the harness's),
    then 3, 2, 1 (and 4 for a PML4 below a PML5); a fetch's PTE index is 5."""
    return 1 if level == levels else {4: 4, 3: 3, 2: 2, 1: 5 if fetch else 1}[level]


def la_of(levels: int, fetch: bool = False) -> int:
    if levels == 2:         # 32-bit paging: 10-bit indexes, la[31:22] and la[21:12]
        return (index_at(2, 2) << 22) | (index_at(1, 2, fetch) << 12) | OFFSET
    return sum(index_at(lv, levels, fetch) << (12 + 9 * (lv - 1)) for lv in range(1, levels + 1)) | OFFSET


# --- the space ----------------------------------------------------------------------------------

class Space:
    """The product of ``DIMENSIONS`` for one paging mode, with its bijection to 0..size-1."""

    def __init__(self, mode: str = "4level"):
        if mode not in MODES:
            raise UsageError(f"--mode must be one of {', '.join(MODES)}; got {mode!r}")
        self.mode = mode
        self.levels = MODES[mode]
        self.dims = MODE_DIMENSIONS[mode]
        self.dim = {d.name: d for d in self.dims}
        self.radix = np.array([len(d.values) for d in self.dims], dtype=np.int64)
        # place value of each digit: the last dimension varies fastest
        self.place = np.ones(len(self.dims), dtype=np.int64)
        for k in range(len(self.dims) - 2, -1, -1):
            self.place[k] = self.place[k + 1] * self.radix[k + 1]
        self.size = int(self.place[0] * self.radix[0])

    def decode(self, index: np.ndarray, names: frozenset[str] | None = None) -> dict[str, np.ndarray]:
        """Each index's value number in every dimension (or those ``names``), as arrays of small ints."""
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.size):
            raise ValueError(f"combination index outside 0..{self.size - 1}")
        return {d.name: ((index // self.place[k]) % self.radix[k]).astype(np.int8) for k, d in enumerate(self.dims)
                if names is None or d.name in names}

    def encode(self, digits: dict[str, np.ndarray]) -> np.ndarray:
        out = np.zeros(np.asarray(digits[self.dims[0].name]).shape, dtype=np.int64)
        for k, d in enumerate(self.dims):
            out += np.asarray(digits[d.name], dtype=np.int64) * self.place[k]
        return out

    def combination(self, i: int) -> dict[str, str]:
        dig = self.decode(np.array([i]))
        return {d.name: d.values[int(dig[d.name][0])] for d in self.dims}

    def index_of(self, combo: dict[str, str]) -> int:
        if set(combo) != set(self.dim):
            raise ValueError(f"a combination names every dimension once: {sorted(set(self.dim) ^ set(combo))}")
        return int(sum(self.dim[name].values.index(v) * int(self.place[k])
                       for k, name in enumerate(d.name for d in self.dims) for v in [combo[name]]))

    def describe(self) -> str:
        return "\n".join(f"  {d.name:<8} {' '.join(d.values):<40} {d.doc}" for d in self.dims)


# --- the filter ----------------------------------------------------------------------------------
#
#   expr   := term ('or' term)*
#   term   := factor ('and' factor)*
#   factor := 'not' factor | '(' expr ')' | NAME ('==' | '!=') VALUE | NAME 'in' '(' VALUE (',' VALUE)* ')'
#
# NAME is a dimension, VALUE one of its values; anything else is an error naming the column.

_TOKEN = re.compile(r"\s*(?:(==|!=|\(|\)|,)|([A-Za-z0-9_]+))")


class Filter:
    """A parsed ``--filter`` expression: ``mask(digits)`` says which combinations it keeps; it reads the
    dimensions in ``names`` only, so ``count`` multiplies out the others."""

    def __init__(self, text: str, tree: tuple):
        self.text = text
        self.tree = tree
        self.names = frozenset(_names(tree))

    def mask(self, digits: dict[str, np.ndarray]) -> np.ndarray:
        if not self.names:
            return np.ones(next(iter(digits.values())).shape, dtype=bool)
        return _eval(self.tree, digits)

    def select(self, space: "Space", index: np.ndarray) -> np.ndarray:
        """The indexes it keeps."""
        if not self.names:
            return index
        return index[_eval(self.tree, space.decode(index, self.names))]

    def kept(self, space: "Space") -> dict[str, np.ndarray]:
        """The tuples of the named dimensions' values that the filter keeps (columns by name)."""
        dims = [d for d in space.dims if d.name in self.names]
        grids = np.meshgrid(*[np.arange(len(d.values), dtype=np.int8) for d in dims], indexing="ij")
        cols = {d.name: g.reshape(-1) for d, g in zip(dims, grids)}
        keep = _eval(self.tree, cols)
        return {k: v[keep] for k, v in cols.items()}

    def count(self, space: "Space") -> int:
        """How many combinations of the space it keeps: the filter over the product of the dimensions it
        names, times the sizes of the others."""
        if not self.names:
            return space.size
        kept = self.kept(space)
        rest = space.size // int(np.prod([len(space.dim[n].values) for n in self.names]))
        return int(next(iter(kept.values())).size) * rest

    def possible(self, kept: dict[str, np.ndarray], fixed: dict[str, int]) -> bool:
        """Whether any combination with these dimensions' values (``fixed``) is kept (``kept``: from
        ``kept()``): a block of indexes over which they do not change can be skipped whole."""
        if not self.names:
            return True
        ok = np.ones(next(iter(kept.values())).size, dtype=bool)
        for name, v in fixed.items():
            if name in kept:
                ok &= kept[name] == v
        return bool(ok.any())


def _names(node: tuple):
    if node[0] in ("or", "and"):
        yield from _names(node[1])
        yield from _names(node[2])
    elif node[0] == "not":
        yield from _names(node[1])
    elif node[0] == "in":
        yield node[1]


def _eval(node: tuple, dig: dict[str, np.ndarray]) -> np.ndarray:
    op = node[0]
    if op == "or":
        return _eval(node[1], dig) | _eval(node[2], dig)
    if op == "and":
        return _eval(node[1], dig) & _eval(node[2], dig)
    if op == "not":
        return ~_eval(node[1], dig)
    _, name, values = node      # "in"
    a = dig[name]
    out = np.zeros(a.shape, dtype=bool)
    for v in values:
        out |= a == v
    return out


def parse_filter(text: str | None, space: Space) -> Filter:
    if text is None or not text.strip():
        return Filter("", ("all",))
    toks: list[tuple[str, int]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise UsageError(f"--filter: unexpected character {text[pos]!r} at column {pos + 1}: {text}")
        toks.append((m.group(1) or m.group(2), m.start(m.lastindex or 0) + 1))
        pos = m.end()
    toks.append(("", len(text) + 1))
    at = 0

    def peek() -> str:
        return toks[at][0]

    def take(want: str | None = None) -> tuple[str, int]:
        nonlocal at
        tok, col = toks[at]
        if want is not None and tok != want:
            raise UsageError(f"--filter: expected {want!r} at column {col}, found {tok or 'the end'!r}: {text}")
        at += 1
        return tok, col

    def value(name: str) -> int:
        tok, col = take()
        dim = space.dim[name]
        if tok not in dim.values:
            raise UsageError(f"--filter: {tok or 'the end'!r} at column {col} is not a value of {name} "
                             f"(one of {', '.join(dim.values)}): {text}")
        return dim.values.index(tok)

    def factor() -> tuple:
        tok, col = toks[at]
        if tok == "not":
            take()
            return ("not", factor())
        if tok == "(":
            take()
            e = expr()
            take(")")
            return e
        if tok not in space.dim:
            raise UsageError(f"--filter: {tok or 'the end'!r} at column {col} is not a dimension of {space.mode} "
                             f"paging (one of {', '.join(space.dim)}): {text}")
        take()
        op, col = take()
        if op == "==":
            return ("in", tok, (value(tok),))
        if op == "!=":
            return ("not", ("in", tok, (value(tok),)))
        if op == "in":
            take("(")
            vals = [value(tok)]
            while peek() == ",":
                take()
                vals.append(value(tok))
            take(")")
            return ("in", tok, tuple(vals))
        raise UsageError(f"--filter: expected ==, != or in at column {col}, found {op or 'the end'!r}: {text}")

    def term() -> tuple:
        t = factor()
        while peek() == "and":
            take()
            t = ("and", t, factor())
        return t

    def expr() -> tuple:
        t = term()
        while peek() == "or":
            take()
            t = ("or", t, term())
        return t

    tree = expr()
    if peek() != "":
        tok, col = toks[at]
        raise UsageError(f"--filter: unexpected {tok!r} at column {col}: {text}")
    return Filter(text, tree)


# --- the accesses a batch of combinations stands for ----------------------------------------------

@dataclass
class Items:
    """One access per combination, each through its own tree (arrays of length n)."""

    index: np.ndarray       # int64: the combination
    levels: int
    cr0: np.ndarray         # uint64
    cr4: np.ndarray
    efer: np.ndarray
    pkru: np.ndarray
    la: np.ndarray
    acc: np.ndarray         # uint8: 0 read, 1 write, 2 fetch
    cpl: np.ndarray
    ac: np.ndarray
    entries: np.ndarray     # (n, levels) uint64: the entry at each level, top first
    written: np.ndarray     # uint16: bit L-1 set where the tree has an entry at level L (down to the
    #                         leaf or the first not-present entry)
    paging: str = "4level"  # the paging mode (MODES)

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def slot(self, k: int, i: int) -> tuple[int, int]:
        """(table, index) of access i's entry at position k (0 = top)."""
        level = self.levels - k
        return TABLES[k], index_at(level, self.levels, int(self.acc[i]) == 2)

    @property
    def entry_size(self) -> int:
        """Bytes per paging entry: 4 with 32-bit paging, else 8."""
        return 4 if self.paging == "32bit" else 8

    @property
    def tla(self) -> np.ndarray:
        """The canonical address whose indexes place each tree's entries (la without the
        non-canonical bit)."""
        return np.where(self.acc == 2, np.uint64(la_of(self.levels, True)), np.uint64(la_of(self.levels)))


def build(space: Space, index: np.ndarray) -> Items:
    """The trees and accesses of these combinations."""
    if space.mode in LEGACY:
        return _build_legacy(space, index)
    index = np.asarray(index, dtype=np.int64)
    d = space.decode(index)
    n = index.shape[0]
    levels = space.levels
    u64 = np.uint64

    def on(name: str) -> np.ndarray:
        return d[name].astype(bool)

    cr0 = u64(CR0_BASE) | np.where(on("wp"), u64(CR0_WP), u64(0))
    cr4 = (u64(CR4_BASE | (CR4_LA57 if levels == 5 else 0)) | np.where(on("smep"), u64(CR4_SMEP), u64(0))
           | np.where(on("smap"), u64(CR4_SMAP), u64(0)) | np.where(d["pk"] > 0, u64(CR4_PKE), u64(0)))
    efer = u64(EFER_BASE) | np.where(on("nxe"), u64(EFER_NXE), u64(0))
    pkru = np.array([PKRU[v] for v in DIM["pk"].values], dtype=np.uint64)[d["pk"]]
    acc = d["access"].astype(np.uint8)
    la = np.where(acc == 2, np.uint64(la_of(levels, True)), np.uint64(la_of(levels)))
    noncanon = d["variant"] == DIM["variant"].values.index("noncanonical")
    la[noncanon] |= u64(1 << (56 if levels == 5 else 47))
    cpl = np.where(d["cpl"] == 1, 3, 0).astype(np.uint8)
    ac = d["ac"].astype(np.uint8)

    def flags(prefix: str, a: bool) -> np.ndarray:
        f = (np.where(on(prefix + "_p"), u64(1), u64(0)) | np.where(on(prefix + "_rw"), u64(2), u64(0))
             | np.where(on(prefix + "_us"), u64(4), u64(0)) | np.where(on(prefix + "_nx"), u64(1 << 63), u64(0)))
        if a:
            f |= np.where(on(prefix + "_a"), u64(0x20), u64(0)) | np.where(on(prefix + "_d"), u64(0x40), u64(0))
        return f

    leaf_kind = d["leaf"]                       # 0 4k, 1 2m, 2 1g
    leaf_level = (leaf_kind + 1).astype(np.int64)
    dir_level = leaf_level + 1
    variant = d["variant"]
    vnames = DIM["variant"].values
    leaf = flags("leaf", True) | u64(PKEY << 59)
    leaf |= np.where(leaf_kind > 0, u64(0x80), u64(0))
    leaf |= np.array([FRAME[v] for v in DIM["leaf"].values], dtype=np.uint64)[leaf_kind]
    leaf = np.where((leaf_kind == 0) & (acc == 2), leaf ^ u64(FRAME["4k"] ^ FETCH_FRAME_4K), leaf)
    leaf |= np.where(variant == vnames.index("leaf51"), u64(1 << 51), u64(0))
    leaf |= np.where(variant == vnames.index("leaf13"), u64(1 << 13), u64(0))
    dire = flags("dir", False) | np.where(variant == vnames.index("dir51"), u64(1 << 51), u64(0))
    entries = np.zeros((n, levels), dtype=np.uint64)
    written = np.zeros(n, dtype=np.uint16)
    for k in range(levels):
        level = levels - k
        nxt = u64(TABLES[k + 1]) if k + 1 < levels else u64(0)
        e = np.where(level == leaf_level, leaf, np.where(level == dir_level, dire | nxt, u64(0x7) | nxt))
        e = np.where(level < leaf_level, u64(0), e)
        entries[:, k] = e
        # the walk reads this level if every entry above is present and none is a leaf
        above_ok = np.ones(n, dtype=bool)
        for j in range(k):
            above_ok &= ((entries[:, j] & u64(1)) != 0) & (levels - j > leaf_level)
        written |= np.where(above_ok & (level >= leaf_level), np.uint16(1 << (level - 1)), np.uint16(0))
    return Items(index, levels, cr0, cr4, efer, pkru, la, acc, cpl, ac, entries, written)


def _build_legacy(space: Space, index: np.ndarray) -> Items:
    """PAE paging: PDPTE (at TABLES[0], slot 1: la[31:30] = 1), PDE, PTE; the PDPTE above a 4 KiB page's
    PDE is P alone.  32-bit paging: PDE (slot 1), PTE; CR4.PSE = 1."""
    index = np.asarray(index, dtype=np.int64)
    d = space.decode(index)
    n = index.shape[0]
    levels = space.levels
    pae = space.mode == "pae"
    u64 = np.uint64
    vn = space.dim["variant"].values

    def on(name: str) -> np.ndarray:
        return d[name].astype(bool)

    def bit(name: str, value: int) -> np.ndarray:
        return np.where(on(name), u64(value), u64(0))

    def variant(name: str, value: int) -> np.ndarray:
        return np.where(d["variant"] == vn.index(name), u64(value), u64(0)) if name in vn else u64(0)

    cr0 = u64(CR0_BASE) | bit("wp", CR0_WP)
    cr4 = u64(CR4_PAE_BIT if pae else CR4_PSE_BIT) | bit("smep", CR4_SMEP) | bit("smap", CR4_SMAP)
    efer = bit("nxe", EFER_NXE) if pae else np.zeros(n, dtype=np.uint64)
    pkru = np.zeros(n, dtype=np.uint64)
    acc = d["access"].astype(np.uint8)
    la = np.where(acc == 2, u64(la_of(levels, True)), u64(la_of(levels)))
    cpl = np.where(d["cpl"] == 1, 3, 0).astype(np.uint8)
    ac = d["ac"].astype(np.uint8)
    big = d["leaf"] == 1
    nx = (lambda p: bit(p + "_nx", 1 << 63)) if pae else (lambda p: u64(0))
    leaf = bit("leaf_p", 1) | bit("leaf_rw", 2) | bit("leaf_us", 4) | bit("leaf_a", 0x20) | bit("leaf_d", 0x40) | nx("leaf")
    frame_big = FRAME["2m" if pae else "4m"]
    leaf |= np.where(big, u64(0x80 | frame_big), np.where(acc == 2, u64(FETCH_FRAME_4K), u64(FRAME["4k"])))
    # the variants flip their bit (a 4 KiB frame at 0x300000 has bit 21 set: flipped it is 0x100000)
    leaf ^= variant("leaf51", 1 << 51) | variant("leaf62", 1 << 62) | variant("leaf13", 1 << 13) | variant("leaf21", 1 << 21)
    dire = bit("dir_p", 1) | bit("dir_rw", 2) | bit("dir_us", 4) | nx("dir") | variant("dir51", 1 << 51)
    entries = np.zeros((n, levels), dtype=np.uint64)
    written = np.zeros(n, dtype=np.uint16)
    if pae:
        pdpte = np.where(big, dire, u64(1)) | u64(TABLES[1]) | variant("pdpte_rsvd", 1 << 5)
        pde = np.where(big, leaf, dire | u64(TABLES[2]))
        entries[:, 0], entries[:, 1], entries[:, 2] = pdpte, pde, np.where(big, u64(0), leaf)
        written |= np.uint16(4)
        written[(pdpte & u64(1)) != 0] |= np.uint16(2)
        written[~big & ((pdpte & u64(1)) != 0) & ((pde & u64(1)) != 0)] |= np.uint16(1)
    else:
        pde = np.where(big, leaf, dire | u64(TABLES[1]))
        entries[:, 0], entries[:, 1] = pde, np.where(big, u64(0), leaf)
        written |= np.uint16(2)
        written[~big & ((pde & u64(1)) != 0)] |= np.uint16(1)
    return Items(index, levels, cr0, cr4, efer, pkru, la, acc, cpl, ac, entries, written, space.mode)


def legacy_text(items: Items, i: int, title: str = "") -> str:
    """Combination i of a PAE or 32-bit sweep in words (memspec's hw programs boot into IA-32e mode, so
    these modes have no program form): the control registers, the entries, the access."""
    lines = [f"# {t}" for t in title.splitlines()]
    lines.append(f"# {items.paging} paging: not a memspec program (the hw harness boots into long mode)")
    lines.append(f"cr0={int(items.cr0[i]):#x} cr4={int(items.cr4[i]):#x} efer={int(items.efer[i]):#x} "
                 f"cr3={TABLES[0]:#x}")
    for k in range(items.levels):
        level = items.levels - k
        if int(items.written[i]) >> (level - 1) & 1:
            table, idx = items.slot(k, i)
            lines.append(f"entry at {table + items.entry_size * idx:#x} (table {table:#x} index {idx}) = "
                         f"{int(items.entries[i, k]):#x}")
    lines.append(f"access la={int(items.la[i]):#x} {('read', 'write', 'fetch')[int(items.acc[i])]} "
                 f"cpl={int(items.cpl[i])} ac={int(items.ac[i])}")
    return "\n".join(lines) + "\n"


def program_text(items: Items, i: int, title: str = "") -> str:
    """Combination i of a batch as an ordinary hw program (memspec/program.py's text): boot with its
    control registers, PKRU, the entries of its tree, MOV CR3, the access, then every entry read back."""
    lines = ["# memspec-program: 1"]
    if title:
        lines += [f"# {t}" for t in title.splitlines()]
    cr4 = int(items.cr4[i])
    lines.append(f"boot({int(items.cr0[i]):#x}, {cr4:#x}, {int(items.efer[i]):#x})")
    if cr4 & CR4_PKE and int(items.pkru[i]):
        lines.append(f"wrpkru({int(items.pkru[i]):#x})")
    reads = []
    for k in range(items.levels):
        level = items.levels - k
        if not int(items.written[i]) >> (level - 1) & 1:
            continue
        table, idx = items.slot(k, i)
        e = int(items.entries[i, k])
        lines.append(f"set_pte({table:#x}, {idx}, {e & ADDR_BITS:#x}, {e & ~ADDR_BITS & (2**64 - 1):#x})")
        reads.append(f"read_pte({table:#x}, {idx})")
    lines.append(f"mov_cr3({TABLES[0]:#x})")
    op = ("ACC_READ", "ACC_WRITE", "ACC_EXEC")[int(items.acc[i])]
    lines.append(f"access({int(items.la[i]):#x}, {op}, {int(items.cpl[i])}, {int(items.ac[i])})")
    lines += reads
    return "\n".join(lines) + "\n"


# --- what a target reports --------------------------------------------------------------------------

ALLOWED, PF, GP, OTHER, REFUSED = 0, 1, 2, 3, 4
KIND_NAMES = {ALLOWED: "allowed", PF: "#PF", GP: "#GP", OTHER: "other exception", REFUSED: "refused"}


@dataclass
class Observed:
    """A target's answer per access: kind (ALLOWED, PF, GP, OTHER, REFUSED), vector, #PF error code
    and CR2, the value a load or store returned, and the A/D bits of the tree's entries afterwards
    (two bits per level as in ``Items.written``)."""

    kind: np.ndarray        # uint8
    vector: np.ndarray      # int16 (-1: none)
    errcode: np.ndarray     # uint32
    cr2: np.ndarray         # uint64
    value: np.ndarray       # uint64
    ad: np.ndarray          # uint16

    @classmethod
    def empty(cls, n: int) -> "Observed":
        return cls(np.zeros(n, np.uint8), np.full(n, -1, np.int16), np.zeros(n, np.uint32), np.zeros(n, np.uint64),
                   np.zeros(n, np.uint64), np.zeros(n, np.uint16))


def ad_of(entries: np.ndarray, levels: int, written: np.ndarray) -> np.ndarray:
    """The A/D bits of the written entries, packed as ``Observed.ad``."""
    out = np.zeros(entries.shape[0], dtype=np.uint16)
    for k in range(levels):
        level = levels - k
        bits2 = ((entries[:, k] >> np.uint64(5)) & np.uint64(3)).astype(np.uint16)
        mask = ((written >> np.uint16(level - 1)) & np.uint16(1)).astype(bool)
        out |= np.where(mask, bits2 << np.uint16(2 * (level - 1)), np.uint16(0)).astype(np.uint16)
    return out


# --- what a target's CPU cannot stage ------------------------------------------------------------

UNSUPPORTED_REASONS = ("", "SMEP (CPUID.07H:EBX[7])", "SMAP (CPUID.07H:EBX[20])", "protection keys (PKU)",
                       "execute-disable (NX)", "bit 51 reserved (MAXPHYADDR < 52)")


def unsupported(space: Space, digits: dict[str, np.ndarray], facts: dict) -> np.ndarray:
    """Per combination, 0 if the target's CPU (``facts``) can stage it, else the index of the reason in
    ``UNSUPPORTED_REASONS``.  (5-level paging without LA57 is the whole mode: the caller says so.)"""
    n = next(iter(digits.values())).shape[0]
    out = np.zeros(n, dtype=np.int8)
    vn = space.dim["variant"].values
    need = [(name, fact, code) for name, fact, code in (("smep", "smep", 1), ("smap", "smap", 2), ("pk", "pku", 3),
                                                         ("nxe", "nx", 4)) if name in digits]
    for name, fact, code in need:
        if not facts.get(fact, False):
            out[(out == 0) & (digits[name] > 0)] = code
    if int(facts.get("maxphyaddr", 52)) >= 52 and "leaf51" in vn:
        bit51 = (digits["variant"] == vn.index("leaf51")) | (digits["variant"] == vn.index("dir51"))
        out[(out == 0) & bit51] = 5
    return out


__all__ = ["unsupported", "UNSUPPORTED_REASONS", "ALLOWED", "PF", "GP", "OTHER", "REFUSED", "KIND_NAMES",
           "Dimension", "DIMENSIONS", "Space", "Filter", "parse_filter", "Items", "build", "program_text",
           "Observed", "ad_of", "MODES", "MODE_DIMENSIONS", "LEGACY", "TABLES", "la_of", "index_at", "legacy_text"]
