"""The os layer's address spaces: VMAs, protections, contents and sharing, and the
POSIX memory calls on them, as the Linux x86-64 kernel implements them.

Every rule names its clause (``memspec clauses`` lists them with citations).
Where POSIX leaves a choice (the address mmap picks, whether a PROT_EXEC-only
page is readable), the model computes the allowed set and adopts what the
target chose.  Where Linux differs from POSIX, the model follows Linux and the
clause records the difference.

Worked example: ``a = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)``
then ``store(a, 1)`` -> SIGSEGV (clause ``posix.mmap.prot-enforced-write``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

from memspec.consts import MAP, PAGE_SIZE, PROT, errno_name
from memspec.records import OK, Outcome

from .expect import Expect, errno, exactly
from .intervals import IntervalMap

PAGE_MASK = ~(PAGE_SIZE - 1)
TASK_SIZE = 0x7FFFFFFFF000          # x86-64, 4-level paging: 128 TiB - one page
DEFAULT_MMAP_BASE = 0x7F0000000000   # where the model's own top-down placement starts
MAP_TYPE = 0x0F
MAP_DROPPABLE = 0x08                 # Linux 6.11+
PROT_RWX = PROT["PROT_READ"] | PROT["PROT_WRITE"] | PROT["PROT_EXEC"]
R, W, X = PROT["PROT_READ"], PROT["PROT_WRITE"], PROT["PROT_EXEC"]
GROWS = PROT["PROT_GROWSDOWN"] | PROT["PROT_GROWSUP"]


U64 = (1 << 64) - 1
# Arguments the kernel receives as unsigned long: -1 arrives as 0xffff_ffff_ffff_ffff.
_UNSIGNED = {"addr", "length", "offset"}


def _registers(name: str, args: tuple) -> tuple:
    from memspec.calls import CALLS
    return tuple(a & U64 if isinstance(a, int) and p.name in _UNSIGNED else a
                 for p, a in zip(CALLS[name].params, args))


def page_align(n: int) -> int:
    return (n + PAGE_SIZE - 1) & PAGE_MASK


@dataclass(frozen=True, slots=True)
class Vma:
    """One mapping: protection, sharing and the memory object behind it.

    ``obj`` names a shared memory object (MAP_SHARED) or is ``None`` for private
    anonymous memory.  For a shared mapping, address ``x`` holds byte
    ``x - origin`` of the object, so splitting a VMA needs no arithmetic.
    ``clause`` is the clause whose call last set this range (blamed on mismatch).
    """

    prot: int
    shared: bool
    obj: int | None = None
    origin: int = 0
    exec_only: bool = False    # PROT_EXEC alone under PKU: an execute-only protection key
    clause: str = "posix.mmap.maps-range"

    @property
    def perms(self) -> str:
        return (("r" if self.prot & R else "-") + ("w" if self.prot & W else "-")
                + ("x" if self.prot & X else "-") + ("s" if self.shared else "p"))


@dataclass(slots=True)
class Config:
    """Machine facts the model needs; the defaults are Linux 6.x on x86-64."""

    mmap_min_addr: int = 4096
    task_size: int = TASK_SIZE
    mmap_base: int = DEFAULT_MMAP_BASE
    # ranges known to hold no mapping of the target's own (the linux target's
    # sandbox window): a hint there that the model sees free must be honoured.
    quiet_ranges: tuple[tuple[int, int], ...] = ()
    cap_sys_rawio: bool = True       # root: mmap below mmap_min_addr allowed

    @classmethod
    def from_facts(cls, facts: dict) -> "Config":
        """Build from a target's reported facts (``Target.facts()`` / protocol ``hello``)."""
        c = cls()
        if "mmap_min_addr" in facts:
            c.mmap_min_addr = int(facts["mmap_min_addr"])
        if "quiet_ranges" in facts:
            c.quiet_ranges = tuple((int(a), int(b)) for a, b in facts["quiet_ranges"])
        if "cap_sys_rawio" in facts:
            c.cap_sys_rawio = bool(facts["cap_sys_rawio"])
        return c


class Mm:
    """One process's address space (Linux's mm_struct)."""

    __slots__ = ("vmas", "private", "inherited")

    def __init__(self) -> None:
        self.vmas: IntervalMap[Vma] = IntervalMap()
        self.private: dict[int, bytearray] = {}   # page address -> contents (absent: zero)
        self.inherited: set[int] = set()          # private pages copied at fork (copy-on-write)

    def fork(self) -> "Mm":
        child = Mm()
        child.vmas = self.vmas.copy()
        child.private = {p: bytearray(b) for p, b in self.private.items()}
        child.inherited = set(self.private)
        self.inherited |= set(self.private)
        return child

    def drop_private(self, start: int, end: int) -> None:
        for store in (self.private, self.inherited):
            if (end - start) // PAGE_SIZE < len(store):
                for p in range(start, end, PAGE_SIZE):
                    store.discard(p) if isinstance(store, set) else store.pop(p, None)
            else:
                for p in [p for p in store if start <= p < end]:
                    store.discard(p) if isinstance(store, set) else store.pop(p, None)

    def mapped_pages(self, start: int, end: int) -> Iterator[tuple[int, int, Vma]]:
        for s, e, v in self.vmas.overlapping(start, end):
            yield max(s, start), min(e, end), v


class System:
    """All processes and shared memory objects; the os layer's whole state."""

    def __init__(self, config: Config | None = None):
        self.config = config or Config()
        self.procs: dict[str, Mm] = {"main": Mm()}
        self.objects: dict[int, dict[int, bytearray]] = {}   # shared object -> page offset -> bytes
        self._next_obj = 1
        self._next_pid = 2
        self._pending_fork: Mm | None = None

    # -- entry point -------------------------------------------------------

    def expect(self, proc: str, name: str, args: tuple) -> Expect:
        mm = self.procs.get(proc)
        if mm is None:
            return errno("memspec.proc.exited", "ESRCH")
        return getattr(self, "_expect_" + name)(mm, *_registers(name, args))

    def apply(self, proc: str, name: str, args: tuple, outcome: Outcome) -> None:
        """Adopt ``outcome`` (already judged allowed) as what happened."""
        mm = self.procs.get(proc)
        if mm is None:
            return
        getattr(self, "_apply_" + name)(proc, mm, outcome, *_registers(name, args))

    # -- mmap ------------------------------------------------------------------

    def _mmap_check(self, mm: Mm, addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> Expect | None:
        c = self.config
        # arch/x86/kernel/sys_x86_64.c: the byte offset must be page aligned.
        if offset & ~PAGE_MASK:
            return errno("posix.mmap.einval-offset", "EINVAL")
        if not flags & MAP["MAP_ANONYMOUS"]:
            # This slice maps anonymous memory only; a file mapping needs an fd.
            if fd < 0:
                return errno("posix.mmap.ebadf", "EBADF")
            return Expect("posix.mmap.file", OK, "file mappings are not modelled yet", unknown=True)
        if flags & MAP["MAP_HUGETLB"] or flags & MAP["MAP_GROWSDOWN"]:
            return Expect("linux.mmap.hugetlb-growsdown", OK, "not modelled", unknown=True)
        if length == 0:
            return errno("posix.mmap.einval-len0", "EINVAL")
        plen = page_align(length)
        if plen == 0 or plen > (1 << 64) - 1:
            return errno("linux.mmap.enomem-len-overflow", "ENOMEM")
        fixed = bool(flags & (MAP["MAP_FIXED"] | MAP["MAP_FIXED_NOREPLACE"]))
        if plen > c.task_size:
            return errno("linux.mmap.enomem-too-long", "ENOMEM")
        if fixed:
            if addr >= (1 << 64) - 4095:
                # mm/mmap.c __get_unmapped_area: a MAP_FIXED address passes through
                # get_area unchanged and IS_ERR_VALUE() reads the top 4095 values as -errno.
                return errno("linux.mmap.fixed-addr-is-err-value", errno_name((1 << 64) - addr))
            if addr > c.task_size - plen:
                return errno("linux.mmap.fixed-enomem-beyond-task-size", "ENOMEM")
            if addr & ~PAGE_MASK:
                return errno("posix.mmap.fixed-einval-unaligned", "EINVAL")
            if addr < c.mmap_min_addr and not c.cap_sys_rawio:
                return errno("linux.mmap.eperm-below-min-addr", "EPERM")
            if flags & MAP["MAP_FIXED_NOREPLACE"] and mm.vmas.any_overlap(addr, addr + plen):
                return errno("linux.mmap.fixed-noreplace-eexist", "EEXIST")
        mtype = flags & MAP_TYPE
        if mtype not in (MAP["MAP_SHARED"], MAP["MAP_PRIVATE"], MAP_DROPPABLE):
            # For anonymous memory MAP_SHARED_VALIDATE (3) falls to this default too.
            return errno("posix.mmap.einval-type", "EINVAL")
        return None

    def _expect_mmap(self, mm: Mm, addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> Expect:
        bad = self._mmap_check(mm, addr, length, prot, flags, fd, offset)
        if bad is not None:
            return bad
        c = self.config
        plen = page_align(length)
        if flags & (MAP["MAP_FIXED"] | MAP["MAP_FIXED_NOREPLACE"]):
            clause = ("linux.mmap.fixed-noreplace-maps" if flags & MAP["MAP_FIXED_NOREPLACE"]
                      else "posix.mmap.fixed-exact")
            return exactly(clause, Outcome(value=addr))
        hi = 0x80000000 if flags & MAP["MAP_32BIT"] else c.task_size
        lo = c.mmap_min_addr
        # mm/mmap.c round_hint_to_min: a hint below mmap_min_addr is raised to it.
        hint = addr & PAGE_MASK
        if hint and hint < c.mmap_min_addr:
            hint = page_align(c.mmap_min_addr)
        if flags & MAP["MAP_32BIT"]:
            # arch/x86/kernel/sys_x86_64.c: MAP_32BIT goes to the legacy bottom-up search
            # before the hint is looked at, so the hint is ignored.
            hint = 0
        honour = bool(hint) and hint + plen <= c.task_size and not mm.vmas.any_overlap(hint, hint + plen) \
            and any(qs <= hint and hint + plen <= qe for qs, qe in c.quiet_ranges)
        default = self._pick(mm, hint, plen, lo, hi)
        if default is None:
            return errno("posix.mmap.enomem-no-room", "ENOMEM")
        if honour:
            return exactly("linux.mmap.hint-used-when-free", Outcome(value=hint))

        def allowed(o: Outcome) -> str | None:
            if not o.ok or o.value is None:
                return f"expected an address, observed {o.describe()}"
            a = o.value
            if a & ~PAGE_MASK:
                return f"address {a:#x} is not page aligned"
            if a < lo or a + plen > hi:
                return f"address {a:#x}+{plen:#x} is outside [{lo:#x}, {hi:#x})"
            if mm.vmas.any_overlap(a, a + plen):
                return f"[{a:#x}, {a + plen:#x}) overlaps an existing mapping"
            return None

        clause = "linux.mmap.32bit-below-2g" if flags & MAP["MAP_32BIT"] else "posix.mmap.new-range-free"
        return Expect(clause, Outcome(value=default), f"a free, page-aligned range of {plen:#x} bytes",
                      predicate=allowed, impl_defined=True)

    def _pick(self, mm: Mm, hint: int, plen: int, lo: int, hi: int) -> int | None:
        if hint and hint + plen <= hi and not mm.vmas.any_overlap(hint, hint + plen):
            return hint
        top = min(hi, self.config.mmap_base)
        for glo, ghi in mm.vmas.gaps(lo, top):
            if ghi - glo >= plen:
                return ghi - plen
        for glo, ghi in mm.vmas.gaps(lo, hi):
            if ghi - glo >= plen:
                return ghi - plen
        return None

    def _apply_mmap(self, proc: str, mm: Mm, o: Outcome, addr: int, length: int, prot: int, flags: int,
                    fd: int, offset: int) -> None:
        if not o.ok or o.value is None:
            return
        start, end = o.value, o.value + page_align(length)
        shared = flags & MAP_TYPE == MAP["MAP_SHARED"]
        obj = None
        if shared:
            obj = self._next_obj
            self._next_obj += 1
            self.objects[obj] = {}
        self._unmap(mm, start, end)
        prot &= PROT_RWX
        vma = Vma(prot, shared, obj, start, exec_only=(prot == X), clause=(
            "posix.mmap.fixed-exact" if flags & MAP["MAP_FIXED"] else "posix.mmap.maps-range"))
        mm.vmas.set(start, end, vma)

    def _unmap(self, mm: Mm, start: int, end: int) -> None:
        mm.drop_private(start, end)
        gone = {v.obj for _, _, v in mm.vmas.overlapping(start, end) if v.obj is not None}
        mm.vmas.remove(start, end)
        if gone:
            self._collect(gone)

    def _collect(self, objs: set[int]) -> None:
        for o in objs:
            if not any(v.obj == o for p in self.procs.values() for _, _, v in p.vmas.items()):
                self.objects.pop(o, None)

    # -- munmap ----------------------------------------------------------------

    def _expect_munmap(self, mm: Mm, addr: int, length: int) -> Expect:
        c = self.config
        # mm/vma.c do_vmi_munmap: alignment, then the range must lie below TASK_SIZE.
        if addr & ~PAGE_MASK:
            return errno("posix.munmap.einval-unaligned", "EINVAL")
        if addr > c.task_size or length > c.task_size - addr:
            return errno("posix.munmap.einval-outside", "EINVAL")
        if page_align(length) == 0:
            return errno("posix.munmap.einval-len0", "EINVAL")
        if not mm.vmas.any_overlap(addr, addr + page_align(length)):
            return exactly("posix.munmap.unmapped-ok", Outcome(value=0))
        return exactly("posix.munmap.removes-range", Outcome(value=0))

    def _apply_munmap(self, proc: str, mm: Mm, o: Outcome, addr: int, length: int) -> None:
        if o.ok and o.value == 0:
            self._unmap(mm, addr, addr + page_align(length))

    # -- mprotect --------------------------------------------------------------

    def _expect_mprotect(self, mm: Mm, addr: int, length: int, prot: int) -> Expect:
        # mm/mprotect.c do_mprotect_pkey, in the kernel's order of checks.
        if prot & GROWS == GROWS:
            return errno("linux.mprotect.einval-grows-both", "EINVAL")
        if addr & ~PAGE_MASK:
            return errno("posix.mprotect.einval-unaligned", "EINVAL")
        if length == 0:
            return exactly("linux.mprotect.len0-ok", Outcome(value=0))
        end = addr + page_align(length)
        if end <= addr or end > (1 << 64) - 1 or page_align(length) == 0:
            return errno("linux.mprotect.enomem-wrap", "ENOMEM")
        if prot & ~(PROT_RWX | PROT["PROT_SEM"] | GROWS):
            return errno("posix.mprotect.einval-prot", "EINVAL")
        first = mm.vmas.overlapping(addr, end)
        if not first:
            return errno("posix.mprotect.enomem-unmapped", "ENOMEM")
        if prot & PROT["PROT_GROWSDOWN"]:
            return errno("linux.mprotect.einval-growsdown-not-stack", "EINVAL")
        if first[0][0] > addr:
            return errno("posix.mprotect.enomem-unmapped", "ENOMEM")
        if prot & PROT["PROT_GROWSUP"]:
            return errno("linux.mprotect.einval-growsdown-not-stack", "EINVAL")
        cursor = addr
        for s, e, _ in first:
            if s > cursor:
                return errno("linux.mprotect.enomem-hole-partial", "ENOMEM")
            cursor = e
        if cursor < end:
            return errno("linux.mprotect.enomem-hole-partial", "ENOMEM")
        return exactly("posix.mprotect.sets-prot", Outcome(value=0))

    def _apply_mprotect(self, proc: str, mm: Mm, o: Outcome, addr: int, length: int, prot: int) -> None:
        if not (o.ok or o.errno == "ENOMEM"):
            return
        decided = self._expect_mprotect(mm, addr, length, prot).clause
        if decided not in ("posix.mprotect.sets-prot", "linux.mprotect.enomem-hole-partial"):
            return   # failed before changing anything (or changed nothing: length 0)
        end = addr + page_align(length)
        if decided == "linux.mprotect.enomem-hole-partial":
            # Linux changes the VMAs before the first hole, then fails (mprotect(2) NOTES;
            # POSIX allows "some of the pages may have been changed").
            cursor = addr
            for s, e, _ in mm.vmas.overlapping(addr, end):
                if s > cursor:
                    break
                cursor = e
            end = min(cursor, end)
        p = prot & PROT_RWX
        for s, e, v in list(mm.mapped_pages(addr, end)):
            mm.vmas.set(s, e, replace(v, prot=p, exec_only=(p == X), clause=decided))

    # -- memory accesses -------------------------------------------------------

    def _expect_load(self, mm: Mm, addr: int) -> Expect:
        hit = mm.vmas.find(addr)
        if hit is None:
            return exactly("posix.access.unmapped-sigsegv", Outcome(signal="SIGSEGV"))
        v = hit[2]
        value = self._read(mm, v, addr)
        if v.prot & R or v.prot & W:
            # x86 page tables cannot express write-only: PROT_WRITE implies read.
            clause = self._content_clause(mm, v, addr) if v.prot & R else "linux.x86.write-implies-read"
            return exactly(clause, Outcome(value=value))
        if v.exec_only:
            # With PKU the kernel gives PROT_EXEC-only memory an execute-only key
            # (reads fault); without PKU x86 lets reads through.  POSIX allows both.
            return Expect("linux.x86.exec-only-pkey", Outcome(signal="SIGSEGV"),
                          f"SIGSEGV (PKU) or {value}", (Outcome(signal="SIGSEGV"), Outcome(value=value)),
                          impl_defined=True)
        return exactly("posix.mmap.prot-none-sigsegv", Outcome(signal="SIGSEGV"))

    def _content_clause(self, mm: Mm, v: Vma, addr: int) -> str:
        """Which promise a loaded value rests on: sharing, copy-on-write, zero fill, or plain memory."""
        page = addr & PAGE_MASK
        if v.obj is not None:
            stored = page - v.origin in self.objects[v.obj]
            return "posix.mmap.shared-visible" if stored else "linux.mmap.anon-zero-fill"
        if page in mm.inherited:
            return "posix.fork.private-copy"
        if page in mm.private:
            return "posix.mmap.private-contents"
        return "linux.mmap.anon-zero-fill"

    def _apply_load(self, proc: str, mm: Mm, o: Outcome, addr: int) -> None:
        pass

    def _expect_store(self, mm: Mm, addr: int, value: int) -> Expect:
        hit = mm.vmas.find(addr)
        if hit is None:
            return exactly("posix.access.unmapped-sigsegv", Outcome(signal="SIGSEGV"))
        v = hit[2]
        if v.prot & W:
            return exactly("posix.mmap.prot-write", OK)
        if v.prot == 0:
            return exactly("posix.mmap.prot-none-sigsegv", Outcome(signal="SIGSEGV"))
        return exactly("posix.mmap.prot-enforced-write", Outcome(signal="SIGSEGV"))

    def _apply_store(self, proc: str, mm: Mm, o: Outcome, addr: int, value: int) -> None:
        if not o.ok:
            return
        hit = mm.vmas.find(addr)
        if hit is None:
            return
        v = hit[2]
        page, off = addr & PAGE_MASK, addr & (PAGE_SIZE - 1)
        if v.obj is not None:
            pages = self.objects[v.obj]
            buf = pages.setdefault(page - v.origin, bytearray(PAGE_SIZE))
        else:
            buf = mm.private.setdefault(page, bytearray(PAGE_SIZE))
        buf[off] = value & 0xFF

    def _read(self, mm: Mm, v: Vma, addr: int) -> int:
        page, off = addr & PAGE_MASK, addr & (PAGE_SIZE - 1)
        if v.obj is not None:
            buf = self.objects[v.obj].get(page - v.origin)
        else:
            buf = mm.private.get(page)
        return buf[off] if buf is not None else 0

    def _expect_fetch(self, mm: Mm, addr: int) -> Expect:
        hit = mm.vmas.find(addr)
        if hit is None:
            return exactly("posix.access.unmapped-sigsegv", Outcome(signal="SIGSEGV"))
        if hit[2].prot & X:
            return exactly("posix.mmap.prot-exec", OK)
        # x86-64 with NX: readable is not executable (no READ_IMPLIES_EXEC for 64-bit ELF).
        return exactly("linux.x86.nx-enforced", Outcome(signal="SIGSEGV"))

    def _apply_fetch(self, proc: str, mm: Mm, o: Outcome, addr: int) -> None:
        pass

    # -- processes -------------------------------------------------------------

    def _expect_fork(self, mm: Mm) -> Expect:
        def allowed(o: Outcome) -> str | None:
            if not o.ok or o.value is None or o.value <= 0:
                return f"expected a process id, observed {o.describe()}"
            return None
        return Expect("posix.fork.copies-address-space", Outcome(value=self._next_pid), "a process id",
                      predicate=allowed, impl_defined=True)

    def _apply_fork(self, proc: str, mm: Mm, o: Outcome) -> None:
        # The new process's name is bound by the caller through ``bind_proc``.
        self._pending_fork = mm.fork()
        self._next_pid += 1

    def bind(self, proc: str, name: str, result: str | None, outcome: Outcome) -> None:
        """Give the address space made by the last fork() its program name."""
        if name == "fork" and result and self._pending_fork is not None:
            self.procs[result] = self._pending_fork
            self._pending_fork = None

    # -- invariants ------------------------------------------------------------

    def invariants(self) -> list[tuple[str, str]]:
        """Broken invariants of the os layer's state: (clause, message) pairs."""
        bad: list[tuple[str, str]] = []
        live: set[int] = set()
        for name, mm in self.procs.items():
            prev_end = 0
            for s, e, v in mm.vmas.items():
                if s & ~PAGE_MASK or e & ~PAGE_MASK or s >= e:
                    bad.append(("memspec.inv.vma-page-aligned", f"{name}: VMA {s:#x}-{e:#x} is not a page range"))
                if s < prev_end:
                    bad.append(("memspec.inv.vmas-disjoint", f"{name}: VMA at {s:#x} overlaps the previous one"))
                prev_end = e
                if v.obj is not None:
                    live.add(v.obj)
                    if v.obj not in self.objects:
                        bad.append(("memspec.inv.shared-object-exists", f"{name}: VMA {s:#x} maps a freed object"))
            for page in mm.private:
                hit = mm.vmas.find(page)
                if hit is None or hit[2].obj is not None:
                    bad.append(("memspec.inv.private-pages-mapped",
                                f"{name}: private contents at {page:#x} outside any private mapping"))
        for o in self.objects:
            if o not in live:
                bad.append(("memspec.inv.shared-object-exists", f"shared object {o} outlived its last mapping"))
        return bad

    def _expect_exit(self, mm: Mm) -> Expect:
        return exactly("posix.exit.releases", OK)

    def _apply_exit(self, proc: str, mm: Mm, o: Outcome) -> None:
        gone = {v.obj for _, _, v in mm.vmas.items() if v.obj is not None}
        del self.procs[proc]
        self._collect(gone)

    # -- views -----------------------------------------------------------------

    def maps(self, proc: str) -> list[tuple[int, int, str]]:
        """The process's mappings as /proc/PID/maps would show them, merged where equal."""
        out: list[tuple[int, int, str]] = []
        for s, e, v in self.procs[proc].vmas.items():
            if out and out[-1][1] == s and out[-1][2] == v.perms:
                out[-1] = (out[-1][0], e, v.perms)
            else:
                out.append((s, e, v.perms))
        return out

    def blame(self, proc: str, addr: int) -> str:
        hit = self.procs[proc].vmas.find(addr)
        return hit[2].clause if hit else "posix.munmap.removes-range"


def new_model(facts: dict) -> System:
    return System(Config.from_facts(facts))
