"""The kvm guest code from GNU as (targets/kvm/guest.S, targets/kvm/asm.py): the templates
put each value at the operand the assembler named, checked by disassembling what compile.py
would emit with objdump; a mistake in a template or a misplaced immediate is caught; the
build is cached.  Needs gcc and binutils, not /dev/kvm."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ..conftest import missing_peer

from memspec.errors import TargetError


@pytest.fixture(scope="module")
def guest():
    for tool in ("gcc", "objcopy", "objdump"):
        if shutil.which(tool) is None:
            missing_peer("binutils", f"the kvm guest code is assembled with {tool}: apt-get install -y gcc binutils")
    from memspec.targets.kvm import guest as G
    return G


def disassemble(code: bytes, tmp_path) -> list[str]:
    """objdump's reading of raw x86-64 code: one 'mnemonic operands' per instruction."""
    path = tmp_path / "code.bin"
    path.write_bytes(code)
    out = subprocess.run(["objdump", "-D", "-b", "binary", "-m", "i386:x86-64", str(path)],
                         capture_output=True, text=True, check=True).stdout
    lines = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0].strip().endswith(":"):
            lines.append(" ".join(parts[2].split()))
    return lines


def test_every_immediate_lands_where_the_assembler_put_its_operand(guest, tmp_path) -> None:
    t = guest.code().t
    out = bytearray()
    t["guard"].emit(out, SLOT=0xFFFFFF8000050028, RESUME=0xFFFFFF8000010099)
    t["store"].emit(out, VALUE=0x1234567890ABCDEF, ADDR=0xFFFFFF8000203008)
    t["copy"].emit(out, SRC=0xFFFFFF8000203010, DST=0xFFFFFF8000050030)
    t["wrmsr_efer"].emit(out, LOW=0xD01, HIGH=0x7)
    t["wrpkru"].emit(out, VALUE=0xC)
    t["user"].emit(out, ADDR=0x405008, FLAGS=0x40002, ENTRY=guest.code().user_entry[guest.WRITE])
    t["exec"].emit(out, ADDR=0x7FFF_FFFF_F000)
    asm = disassemble(bytes(out), tmp_path)
    assert asm == [
        "movabs $0xffffff8000050028,%r14", "movabs $0xffffff8000010099,%r15",
        "movabs $0x1234567890abcdef,%rax", "movabs %rax,0xffffff8000203008",
        "movabs 0xffffff8000203010,%rax", "movabs %rax,0xffffff8000050030",
        "mov $0xc0000080,%ecx", "mov $0xd01,%eax", "mov $0x7,%edx", "wrmsr",
        "mov $0xc,%eax", "xor %ecx,%ecx", "xor %edx,%edx", "wrpkru",
        "movabs $0x405008,%rbx", "push $0x23", "movabs $0xffffff8000008000,%rax", "push %rax", "push $0x40002",
        "push $0x2b", "movabs $0xffffff8000006040,%rax", "push %rax", "iretq",
        "movabs $0x7ffffffff000,%rbx", "call *%rbx", "movq $0x2,(%r14)",
    ], asm


def test_a_value_wider_than_its_operand_is_cut_to_it(guest, tmp_path) -> None:
    out = bytearray()
    guest.code().t["wrmsr_efer"].emit(out, LOW=0x1_0000_0D01, HIGH=-1)
    assert disassemble(bytes(out), tmp_path)[1:3] == ["mov $0xd01,%eax", "mov $0xffffffff,%edx"]


def test_a_missing_or_unknown_immediate_is_refused(guest) -> None:
    store = guest.code().t["store"]
    with pytest.raises(KeyError):
        store.emit(bytearray(), VALUE=1)
    with pytest.raises(KeyError):
        store.emit(bytearray(), VALUE=1, ADDR=2, SLOT=3)
    with pytest.raises(KeyError):
        store.emit(bytearray(), VALUE=1, ADRR=2)


def test_the_harness_labels_are_where_the_host_looks(guest, tmp_path) -> None:
    c = guest.code()
    base = guest.PHYS + guest.STUBS
    assert c.fatal == guest.PHYS + guest.HANDLERS + 0x300
    assert c.harness[c.fatal - base] == 0xF4                           # hlt
    for op in (guest.READ, guest.WRITE, guest.EXEC):
        assert c.harness[c.user_done[op] - base] == 0xF4
        assert c.user_entry[op] == guest.PHYS + guest.UCODE + 0x40 * op
    # the #PF stub pushes no error code of its own (the CPU does); #UD's pushes a zero
    common_at = guest.HANDLERS - guest.STUBS
    assert disassemble(c.harness[16 * 14:16 * 14 + 7], tmp_path) == ["push $0xe", f"jmp {common_at - 16 * 14:#x}"]
    assert disassemble(c.harness[16 * 6:16 * 6 + 9], tmp_path) == ["push $0x0", "push $0x6",
                                                                   f"jmp {common_at - 16 * 6:#x}"]
    common = disassemble(c.harness[guest.HANDLERS - guest.STUBS:guest.HANDLERS - guest.STUBS + 0x3A], tmp_path)
    assert common[0] == "mov %rax,0x20(%r14)" and common[-1] == "jmp *%r15"


def test_a_broken_template_is_caught(guest) -> None:
    from memspec.targets.kvm import asm
    # an operand the assembler would resolve RIP-relative cannot be patched as an immediate
    with pytest.raises(TargetError, match="R_X86_64_PC32"):
        asm._relocations("0000000000000003 R_X86_64_PC32     ADDR-0x4\n")
    # one name twice in a template: which operand gets the value would be ambiguous
    data = {"sections": {".harness": "", ".probe32": "", ".text": "48b8" + "00" * 8 + "48a3" + "00" * 8},
            "symbols": {"t_store": [".text", 0]},
            "relocs": [[2, 8, "VALUE"], [12, 8, "VALUE"]]}
    with pytest.raises(TargetError, match="VALUE twice"):
        asm._load(data)


def test_the_build_is_cached_by_content(guest, tmp_path, monkeypatch) -> None:
    from memspec.targets.kvm import asm
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = asm.build(guest.DEFINES)
    assert [p.name.startswith("kvm-guest-") for p in (tmp_path / "memspec").iterdir()] == [True]

    def no_assembler(*a, **k):
        raise AssertionError("assembled again although the cache holds this source")
    monkeypatch.setattr(asm, "_assemble", no_assembler)
    assert asm.build(guest.DEFINES) == first
    # other layout constants are another key: assembled, not read from the cache
    with pytest.raises(AssertionError, match="assembled again"):
        asm.build({**guest.DEFINES, "UCS": 0x33})
