"""ASLR clauses (os layer): what randomize_va_space and mmap_rnd_bits promise per exec."""

from __future__ import annotations

from .catalogue import declare

SYSCTL = "Documentation/admin-guide/sysctl/kernel.rst, randomize_va_space"

declare(
    "os",
    ("linux.aslr.mmap-base-bits", "with randomize_va_space >= 1, each of the mmap base's mmap_rnd_bits page bits varies between exec'd processes",
     f"{SYSCTL}; Documentation/admin-guide/sysctl/vm.rst mmap_rnd_bits; arch/x86/mm/mmap.c arch_mmap_rnd"),
    ("linux.aslr.stack-bits", "with randomize_va_space >= 1, the stack top varies in its 22 low page bits",
     f"{SYSCTL}; fs/binfmt_elf.c randomize_stack_top; arch/x86/include/asm/elf.h STACK_RND_MASK"),
    ("linux.aslr.brk-bits", "with randomize_va_space = 2, the heap (brk) start varies within 32 MiB (13 page bits)",
     f"{SYSCTL} (2: also randomise brk); arch/x86/kernel/process.c arch_randomize_brk"),
    ("linux.aslr.vdso-randomised", "with randomize_va_space >= 1, the vDSO's address is randomised",
     f"{SYSCTL} (1: randomise ... the VDSO page)"),
    ("linux.aslr.no-randomize-fixed", "with personality ADDR_NO_RANDOMIZE (or randomize_va_space = 0), the layout is identical in every exec",
     "personality(2), Linux man-pages 6.9: ADDR_NO_RANDOMIZE; setarch(8) -R"),
    ("linux.aslr.page-aligned", "randomised region bases stay page aligned", "seed: ASLR depends on virtual memory; arch/x86/mm/mmap.c (PAGE_SHIFT)"),
)
