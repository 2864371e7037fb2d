/* memspec test kernel: entry, paging-mode switches, exception stubs and the
 * guarded-operation machinery.  GNU assembler, AT&T syntax.
 *
 * Physical layout below 1 MiB (the program owns [1 MiB, end of RAM)):
 *   0x1000  H_BOOT4   harness PML4: [0] identity 0-2 MiB, [511] -> H_PDPT
 *   0x2000  H_BOOT5   harness PML5: [0] and [511] -> H_BOOT4
 *   0x3000  H_IDPDPT  identity PDPT: [0] -> H_IDPD
 *   0x4000  H_IDPD    identity PD: [0] = 2 MiB page at 0
 *   0x5000  H_PDPT    top 1 GiB: [511] -> H_PD
 *   0x6000  H_PD      [0] -> H_PT, [i] = 2 MiB page at i*2 MiB (supervisor)
 *   0x7000  H_PT      4 KiB pages of the first 2 MiB (the user stub page has U/S=1)
 *   0x9000  the multiboot information QEMU leaves (read once at start)
 *   0x10000 this image (.boot at its load address, the rest at KBASE + pa)
 */
#define KBASE 0xFFFFFFFFC0000000
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00010002     /* memory info; address fields (a flat image) */

        .section .multiboot, "a"
        .align 4
mb_header:
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)
        .long mb_header                 /* header_addr */
        .long mb_header                 /* load_addr: the image starts with this header */
        .long _load_end_phys
        .long _bss_end_phys
        .long _start

/* ------------------------------------------------------------------------- */
        .section .boot, "ax"
        .code32
        .globl _start
_start:
        cli
        cld
        movl %ebx, mbi_phys
        movl $_load_end_phys, %edi      /* zero .bss */
        movl $_bss_end_phys, %ecx
        subl %edi, %ecx
        xorl %eax, %eax
        rep stosb
        movl $0x1000, %edi              /* zero the harness tables */
        movl $0x7000, %ecx
        rep stosb
        movl $0x00000083, 0x4000        /* H_IDPD[0]: 2 MiB page at 0, RW */
        movl $0x4003, 0x3000
        movl $0x3003, 0x1000
        movl $0x5007, 0x1000 + 511*8
        movl $0x1003, 0x2000
        movl $0x1007, 0x2000 + 511*8
        movl $0x6007, 0x5000 + 511*8
        movl $0x7007, 0x6000
        movl $1, %ecx
1:      movl %ecx, %eax
        shll $21, %eax
        orl $0x83, %eax
        movl %eax, 0x6000(,%ecx,8)
        incl %ecx
        cmpl $512, %ecx
        jb 1b
        xorl %ecx, %ecx
2:      movl %ecx, %eax
        shll $12, %eax
        orl $0x3, %eax
        movl %eax, 0x7000(,%ecx,8)
        incl %ecx
        cmpl $512, %ecx
        jb 2b
        movl $0x20, %eax                /* CR4.PAE */
        movl %eax, %cr4
        movl $0x1000, %eax
        movl %eax, %cr3
        movl $0xC0000080, %ecx          /* IA32_EFER.LME */
        rdmsr
        orl $0x100, %eax
        wrmsr
        movl $0x80010001, %eax          /* CR0.PG|WP|PE: long mode, compatibility submode */
        movl %eax, %cr0
        lgdt gdtr_low
        ljmp $0x08, $entry64

        .code64
entry64:
        movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        xorw %ax, %ax
        movw %ax, %fs
        movw %ax, %gs
        movabsq $stack_top, %rsp
        movabsq $kmain, %rax
        callq *%rax
3:      cli
        hlt
        jmp 3b

/* Paging-mode switch, second half: runs at its physical address, identity mapped. */
tramp_low:
        pushq $0x18
        leaq tramp32(%rip), %rax
        pushq %rax
        lretq
        .code32
tramp32:
        movl %cr0, %eax                 /* paging off: IA-32e mode ends (SDM 10.8.5.4) */
        andl $0x7FFFFFFF, %eax
        movl %eax, %cr0
        movl %esi, %eax                 /* CR4 as asked, but PCIDE only once back in IA-32e mode */
        andl $~0x20000, %eax
        movl %eax, %cr4
        movl %edx, %ebx
        movl $0xC0000080, %ecx
        movl %ebx, %eax
        andl $~0x400, %eax              /* LMA is the processor's to set */
        xorl %edx, %edx
        wrmsr
        movl %ebp, %cr3                 /* the harness root of the new depth */
        movl %edi, %cr0                 /* paging on: IA-32e mode again */
        ljmp $0x08, $tramp64

        .code64
tramp64:
        movabsq $switch_back, %rax
        jmpq *%rax

        .section .bootdata, "aw"
        .globl mbi_phys
mbi_phys:
        .long 0
        .align 16
        .globl gdt
gdt:
        .quad 0
        .quad 0x00AF9A000000FFFF        /* 0x08 64-bit code, DPL 0 */
        .quad 0x00CF92000000FFFF        /* 0x10 data, DPL 0 */
        .quad 0x00CF9A000000FFFF        /* 0x18 32-bit code, DPL 0 (mode switches) */
        .quad 0x00CFF2000000FFFF        /* 0x20 data, DPL 3 */
        .quad 0x00AFFA000000FFFF        /* 0x28 64-bit code, DPL 3 */
        .globl gdt_tss
gdt_tss:
        .quad 0, 0                      /* 0x30 64-bit TSS, filled by kmain */
gdt_end:
        .align 16
        .globl gdtr_low
gdtr_low:
        .word gdt_end - gdt - 1
        .quad gdt                       /* physical = identity-mapped linear */
        .align 16
        .globl gdtr_high
gdtr_high:
        .word gdt_end - gdt - 1
        .quad gdt + KBASE

/* ------------------------------------------------------------------------- */
        .text
        .code64

/* void switch_mode(u64 cr0, u64 cr4, u64 efer, u64 new_root, u64 cur_root)
 * Leave IA-32e mode through compatibility mode, load CR4 and EFER with paging
 * off (the only way to change CR4.LA57), and come back on the harness root of
 * the new depth.  Interrupts are off throughout. */
        .globl switch_mode
switch_mode:
        pushq %rbx
        pushq %rbp
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
        movq %rsp, saved_rsp(%rip)
        movq %rcx, %rbp
        movabsq $(gdtr_low + KBASE), %rax
        lgdt (%rax)
        movq %r8, %cr3
        movabsq $tramp_low, %rax
        jmpq *%rax
switch_back:
        movabsq $(gdtr_high + KBASE), %rax
        lgdt (%rax)
        movw $0x10, %ax
        movw %ax, %ss
        movw %ax, %ds
        movw %ax, %es
        movq saved_rsp(%rip), %rsp
        popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %rbp
        popq %rbx
        retq

/* u64 run_guarded(fn, a, b, c): call fn(a, b, c); any exception on the way
 * ends it: the vector, error code, CR2 and RIP land in g_fault_* and
 * run_guarded returns as if fn had.  g_fault_vec = -1 for a normal return. */
        .globl run_guarded
run_guarded:
        pushq %rbx
        pushq %rbp
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
        movq %rsp, g_recover_rsp(%rip)
        movq %rdi, %rax
        movq %rsi, %rdi
        movq %rdx, %rsi
        movq %rcx, %rdx
        callq *%rax
        movq %rax, g_fault_rax(%rip)
        movq $-1, g_fault_vec(%rip)
guard_recover:
        movq $0, g_recover_rsp(%rip)
        movw g_data_sel(%rip), %ax      /* 0x10, or 0xC8 in the segmentation unit's GDT */
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        pushfq
        andq $~0x40000, (%rsp)          /* AC off again */
        popfq
        popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %rbp
        popq %rbx
        retq

/* Exception and interrupt entry.  Vectors 0x20-0x2f are the remapped 8259
 * IRQs (only COM1's is unmasked, to wake the idle loop's HLT). */
        .irp v, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,129
isr\v:  pushq $0
        pushq $\v
        jmp isr_common
        .endr
        .irp v, 8,10,11,12,13,14,17,21,29,30
isr\v:  pushq $\v
        jmp isr_common
        .endr

isr_common:
        cmpq $32, (%rsp)
        jb 1f
        cmpq $48, (%rsp)
        jae 1f
        pushq %rax
        movb $0x20, %al
        cmpq $40, 8(%rsp)
        jb 2f
        outb %al, $0xA0
2:      outb %al, $0x20
        popq %rax
        addq $16, %rsp
        iretq
1:      movq %rax, g_fault_rax(%rip)
        movq %rsp, g_fault_rsp(%rip)    /* which stack the CPU delivered on */
        movq (%rsp), %rax
        movq %rax, g_fault_vec(%rip)
        movq 8(%rsp), %rax
        movq %rax, g_fault_err(%rip)
        movq 16(%rsp), %rax
        movq %rax, g_fault_rip(%rip)
        movq %cr2, %rax
        movq %rax, g_fault_cr2(%rip)
        movq g_recover_rsp(%rip), %rax
        testq %rax, %rax
        jz 3f
        movq %rax, %rsp
        jmp guard_recover
3:      movq %rsp, %rdi                 /* not in a guarded operation: a harness bug */
        andq $~15, %rsp
        callq fatal_exception
4:      cli
        hlt
        jmp 4b

        .section .rodata
        .align 8
        .globl isr_table
isr_table:
        .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47
        .quad isr\v
        .endr
        .globl isr_user_return
isr_user_return:
        .quad isr129

/* Guarded operations (called through run_guarded). */
        .text
        .macro SET_AC reg
        testq \reg, \reg
        jz 9f
        pushfq
        orq $0x40000, (%rsp)
        popfq
9:
        .endm

        .globl op_read, op_write, op_fetch, op_user, op_cr0, op_cr3, op_cr4, op_efer
        .globl op_invlpg, op_invpcid, op_wrpkru, op_wrmsr
op_read:                                /* (addr, ac) */
        SET_AC %rsi
        movq (%rdi), %rax
        retq
op_write:
        SET_AC %rsi
        movb $0xCC, (%rdi)
        movq (%rdi), %rax
        retq
op_fetch:                               /* the int3 of the pattern ends it with #BP */
        SET_AC %rsi
        xorl %eax, %eax
        xorl %ecx, %ecx
        xorl %edx, %edx
        xorl %esi, %esi
        jmpq *%rdi
op_user:                                /* (rip, rdi for the stub, rflags): iretq to CPL 3 */
        pushq $0x23
        pushq $0
        pushq %rdx
        pushq $0x2B
        pushq %rdi
        movq %rsi, %rdi
        xorl %eax, %eax
        xorl %ecx, %ecx
        xorl %edx, %edx
        xorl %esi, %esi
        iretq
op_cr0: movq %rdi, %cr0
        retq
op_cr3: movq %rdi, %cr3
        retq
op_cr4: movq %rdi, %cr4
        retq
op_efer:
        movq %rdi, %rax
        movq %rdi, %rdx
        shrq $32, %rdx
        movl $0xC0000080, %ecx
        wrmsr
        retq
op_invlpg:
        invlpg (%rdi)
        retq
op_invpcid:                             /* (type, pcid, addr) */
        subq $16, %rsp
        movq %rsi, (%rsp)
        movq %rdx, 8(%rsp)
        invpcid (%rsp), %rdi
        addq $16, %rsp
        retq
op_wrmsr:                               /* (msr, value) */
        movl %edi, %ecx
        movq %rsi, %rax
        movq %rsi, %rdx
        shrq $32, %rdx
        wrmsr
        retq
op_wrpkru:
        movl %edi, %eax
        xorl %ecx, %ecx
        xorl %edx, %edx
        wrpkru
        retq

/* int svm_run(u64 vmcb_pa, u64 guest_rdi): one VMRUN (AMD APM Vol. 2 15.5); returns at
 * #VMEXIT with the host's RSP, RIP and RAX restored by the processor, GIF set again. */
        .globl svm_run
svm_run:
        pushq %rbx
        pushq %rbp
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
        movq %rdi, %rax
        movq %rsi, %rdi
        clgi
        vmrun %rax
        stgi
        popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %rbp
        popq %rbx
        retq

/* u64 vmx_run(u64 guest_rdi): one VMLAUNCH of the current VMCS (Intel SDM Vol. 3C ch. 27).
 * Returns 0 after a VM exit (or a VM-entry failure, which loads host state the same way),
 * else RFLAGS with CF (VMfailInvalid) or ZF (VMfailValid).  A VM exit loads the host RSP
 * written here and RIP = vmx_exit_stub; general registers are not switched, so the guest's
 * RAX (the value an access read) is saved first thing. */
        .globl vmx_run, vmx_exit_stub
vmx_run:
        pushq %rbx
        pushq %rbp
        pushq %r12
        pushq %r13
        pushq %r14
        pushq %r15
        movl $0x6C14, %edx              /* host RSP */
        vmwrite %rsp, %rdx
        vmlaunch
        pushfq
        popq %rax
        jmp 1f
vmx_exit_stub:
        movq %rax, g_vmx_rax(%rip)
        xorl %eax, %eax
1:      popq %r15
        popq %r14
        popq %r13
        popq %r12
        popq %rbp
        popq %rbx
        retq

        .globl op_vmxon
op_vmxon:                               /* (region pa): VMXON; returns RFLAGS */
        pushq %rdi
        vmxon (%rsp)
        pushfq
        popq %rax
        popq %rdi
        retq

/* SVM guest stubs at CPL 0 (supervisor pages of the guest's harness slot): VMMCALL exits. */
        .globl gk_read, gk_write
gk_read:
        movq (%rdi), %rax
        vmmcall
gk_write:
        movb $0xCC, (%rdi)
        movq (%rdi), %rax
        vmmcall

/* VMX guest stubs at CPL 0: VMCALL exits (unconditionally in VMX non-root operation). */
        .globl gkv_read, gkv_write
gkv_read:
        movq (%rdi), %rax
        vmcall
gkv_write:
        movb $0xCC, (%rdi)
        movq (%rdi), %rax
        vmcall

/* Ring-3 stubs: the only code on a user page.  INT 0x81 (DPL 3) returns to the harness;
 * in an SVM guest at CPL 3, VMMCALL does. */
        .section .user, "ax"
        .globl user_read, user_write, user_fetch
user_read:
        movq (%rdi), %rax
        int $0x81
user_write:
        movb $0xCC, (%rdi)
        movq (%rdi), %rax
        int $0x81
user_fetch:                             /* a jump at CPL 3 (non-canonical targets: #GP here) */
        jmpq *%rdi
/* The segmentation unit's loads at CPL 1..3 (kernel.c seg_command 'L'): MOV Sreg N, r16 at
 * the ring seg_op_ring entered, then back through INT 0x81. */
        .irp n, 0, 1, 2, 3, 4, 5
seg_user_load_\n:
        movl %edi, %eax
        .byte 0x8e, 0xc0 | (\n << 3)
        int $0x81
        .endr
        .globl gu_read, gu_write
gu_read:
        movq (%rdi), %rax
        vmmcall
gu_write:
        movb $0xCC, (%rdi)
        movq (%rdi), %rax
        vmmcall
        .globl guv_read, guv_write
guv_read:
        movq (%rdi), %rax
        vmcall
guv_write:
        movb $0xCC, (%rdi)
        movq (%rdi), %rax
        vmcall


        .text
/* void seg_env_enter(gdtr, idtr) / seg_env_exit(gdtr, idtr): switch GDT, IDT, CS and the data
 * segments between the kernel's (CS 0x08, data 0x10) and the segmentation unit's (its GDT's
 * harness descriptors: 64-bit code 0xD0, flat data 0xC8).  Interrupts are off (commands run
 * with IF = 0).  guard_recover loads g_data_sel, which each side sets to its own. */
        .globl seg_env_enter, seg_env_exit
seg_env_enter:
        lgdt (%rdi)
        lidt (%rsi)
        pushq $0xD0
        leaq 1f(%rip), %rax
        pushq %rax
        lretq
1:      movw $0xC8, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        movq $0xC8, g_data_sel(%rip)
        retq
/* seg_op_ring(rip, selector, cpl): IRETQ to rip at CPL cpl on the unit's ring descriptors
 * (GDT 30: 64-bit code, 31: data, both of DPL cpl; written by kernel.c for the probe) */
        .globl seg_op_ring
seg_op_ring:
        leaq (31 << 3)(%rdx), %rcx
        pushq %rcx                      /* SS */
        pushq seg_ring_rsp(%rip)        /* RSP: a stack of the kernel's (the stub uses none) */
        pushq $2                        /* RFLAGS: IF = 0 */
        leaq (30 << 3)(%rdx), %rcx
        pushq %rcx                      /* CS */
        pushq %rdi                      /* RIP */
        movq %rsi, %rdi
        iretq
seg_env_exit:
        lgdt (%rdi)
        lidt (%rsi)
        pushq $0x08
        leaq 1f(%rip), %rax
        pushq %rax
        lretq
1:      movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %ss
        xorl %eax, %eax
        movw %ax, %fs
        movw %ax, %gs
        movq $0x10, g_data_sel(%rip)
        retq

/* Segmentation probes (the seg calls, 64-bit mode; kernel.c seg_*), run by run_guarded in the
 * segmentation unit's environment (its GDT, IDT and root: seg_env_enter).
 * seg_load_N(selector): MOV Sreg N, r16 (8E /r; N = 1 is CS: #UD).
 * seg_acc_S_O_Z(offset, selector, base): reload Sreg S from (selector), for FS and GS then
 * WRMSR its base (the hidden part the program's last load or WRMSR left, kernel.c seg_access),
 * set seg_stage, then the access the unicorn target makes (targets/qemu_seg.py): a read
 * (MOV/MOVZX into EBX) or an XADD of 0 (a write of the value read) of Z bytes at S:offset,
 * with an ES/FS/GS override prefix, DS by default, SS as [RBP]. */
        .text
seg_load_0:
        movl %edi, %eax
        .byte 0x8e, 0xc0
        retq
seg_load_1:
        movl %edi, %eax
        .byte 0x8e, 0xc8
        retq
seg_load_2:
        movl %edi, %eax
        .byte 0x8e, 0xd0
        retq
seg_load_3:
        movl %edi, %eax
        .byte 0x8e, 0xd8
        retq
seg_load_4:
        movl %edi, %eax
        .byte 0x8e, 0xe0
        retq
seg_load_5:
        movl %edi, %eax
        .byte 0x8e, 0xe8
        retq
        /* SEGACC sreg-number, sreg, MSR of its base (0: none), address register, the access */
        .macro SEGACC n, sreg, msr, areg, op, z, insn:vararg
seg_acc_\n\()_\op\()_\z:
        movl %esi, %eax
        movw %ax, %\sreg
        .if \msr
        movq %rdx, %rax
        shrq $32, %rdx
        movl $\msr, %ecx
        wrmsr
        .endif
        movq $1, seg_stage(%rip)
        xorl %ebx, %ebx
        movq %rdi, %\areg
        \insn
        movq %rbx, %rax
        retq
        .endm
        SEGACC 0, es, 0, rax, 0, 1, movzbl %es:(%rax), %ebx
        SEGACC 0, es, 0, rax, 0, 2, movzwl %es:(%rax), %ebx
        SEGACC 0, es, 0, rax, 0, 4, movl %es:(%rax), %ebx
        SEGACC 0, es, 0, rax, 0, 8, movq %es:(%rax), %rbx
        SEGACC 0, es, 0, rax, 1, 1, xaddb %bl, %es:(%rax)
        SEGACC 0, es, 0, rax, 1, 2, xaddw %bx, %es:(%rax)
        SEGACC 0, es, 0, rax, 1, 4, xaddl %ebx, %es:(%rax)
        SEGACC 0, es, 0, rax, 1, 8, xaddq %rbx, %es:(%rax)
        SEGACC 2, ss, 0, rbp, 0, 1, movzbl (%rbp), %ebx
        SEGACC 2, ss, 0, rbp, 0, 2, movzwl (%rbp), %ebx
        SEGACC 2, ss, 0, rbp, 0, 4, movl (%rbp), %ebx
        SEGACC 2, ss, 0, rbp, 0, 8, movq (%rbp), %rbx
        SEGACC 2, ss, 0, rbp, 1, 1, xaddb %bl, (%rbp)
        SEGACC 2, ss, 0, rbp, 1, 2, xaddw %bx, (%rbp)
        SEGACC 2, ss, 0, rbp, 1, 4, xaddl %ebx, (%rbp)
        SEGACC 2, ss, 0, rbp, 1, 8, xaddq %rbx, (%rbp)
        SEGACC 3, ds, 0, rax, 0, 1, movzbl (%rax), %ebx
        SEGACC 3, ds, 0, rax, 0, 2, movzwl (%rax), %ebx
        SEGACC 3, ds, 0, rax, 0, 4, movl (%rax), %ebx
        SEGACC 3, ds, 0, rax, 0, 8, movq (%rax), %rbx
        SEGACC 3, ds, 0, rax, 1, 1, xaddb %bl, (%rax)
        SEGACC 3, ds, 0, rax, 1, 2, xaddw %bx, (%rax)
        SEGACC 3, ds, 0, rax, 1, 4, xaddl %ebx, (%rax)
        SEGACC 3, ds, 0, rax, 1, 8, xaddq %rbx, (%rax)
        SEGACC 4, fs, 0xC0000100, rax, 0, 1, movzbl %fs:(%rax), %ebx
        SEGACC 4, fs, 0xC0000100, rax, 0, 2, movzwl %fs:(%rax), %ebx
        SEGACC 4, fs, 0xC0000100, rax, 0, 4, movl %fs:(%rax), %ebx
        SEGACC 4, fs, 0xC0000100, rax, 0, 8, movq %fs:(%rax), %rbx
        SEGACC 4, fs, 0xC0000100, rax, 1, 1, xaddb %bl, %fs:(%rax)
        SEGACC 4, fs, 0xC0000100, rax, 1, 2, xaddw %bx, %fs:(%rax)
        SEGACC 4, fs, 0xC0000100, rax, 1, 4, xaddl %ebx, %fs:(%rax)
        SEGACC 4, fs, 0xC0000100, rax, 1, 8, xaddq %rbx, %fs:(%rax)
        SEGACC 5, gs, 0xC0000101, rax, 0, 1, movzbl %gs:(%rax), %ebx
        SEGACC 5, gs, 0xC0000101, rax, 0, 2, movzwl %gs:(%rax), %ebx
        SEGACC 5, gs, 0xC0000101, rax, 0, 4, movl %gs:(%rax), %ebx
        SEGACC 5, gs, 0xC0000101, rax, 0, 8, movq %gs:(%rax), %rbx
        SEGACC 5, gs, 0xC0000101, rax, 1, 1, xaddb %bl, %gs:(%rax)
        SEGACC 5, gs, 0xC0000101, rax, 1, 2, xaddw %bx, %gs:(%rax)
        SEGACC 5, gs, 0xC0000101, rax, 1, 4, xaddl %ebx, %gs:(%rax)
        SEGACC 5, gs, 0xC0000101, rax, 1, 8, xaddq %rbx, %gs:(%rax)
        .section .rodata
        .align 8
        .globl seg_load_table, seg_acc_table, seg_user_load_table
seg_user_load_table:
        .quad seg_user_load_0, seg_user_load_1, seg_user_load_2, seg_user_load_3, seg_user_load_4, seg_user_load_5
seg_load_table:
        .quad seg_load_0, seg_load_1, seg_load_2, seg_load_3, seg_load_4, seg_load_5
seg_acc_table:                          /* [sreg][op][log2 size] */
        .quad seg_acc_0_0_1, seg_acc_0_0_2, seg_acc_0_0_4, seg_acc_0_0_8, seg_acc_0_1_1, seg_acc_0_1_2, seg_acc_0_1_4, seg_acc_0_1_8
        .quad 0, 0, 0, 0, 0, 0, 0, 0
        .quad seg_acc_2_0_1, seg_acc_2_0_2, seg_acc_2_0_4, seg_acc_2_0_8, seg_acc_2_1_1, seg_acc_2_1_2, seg_acc_2_1_4, seg_acc_2_1_8
        .quad seg_acc_3_0_1, seg_acc_3_0_2, seg_acc_3_0_4, seg_acc_3_0_8, seg_acc_3_1_1, seg_acc_3_1_2, seg_acc_3_1_4, seg_acc_3_1_8
        .quad seg_acc_4_0_1, seg_acc_4_0_2, seg_acc_4_0_4, seg_acc_4_0_8, seg_acc_4_1_1, seg_acc_4_1_2, seg_acc_4_1_4, seg_acc_4_1_8
        .quad seg_acc_5_0_1, seg_acc_5_0_2, seg_acc_5_0_4, seg_acc_5_0_8, seg_acc_5_1_1, seg_acc_5_1_2, seg_acc_5_1_4, seg_acc_5_1_8

        .data
        .align 8
g_data_sel:     .quad 0x10

        .section .bss
        .align 16
        .globl saved_rsp, g_recover_rsp, g_fault_vec, g_fault_err, g_fault_rip, g_fault_cr2, g_fault_rax, g_vmx_rax
saved_rsp:      .quad 0
g_vmx_rax:      .quad 0
g_recover_rsp:  .quad 0
g_fault_vec:    .quad 0
g_fault_err:    .quad 0
g_fault_rip:    .quad 0
g_fault_cr2:    .quad 0
g_fault_rax:    .quad 0
        .globl g_data_sel, seg_stage, g_fault_rsp, seg_ring_rsp
seg_stage:      .quad 0
g_fault_rsp:    .quad 0
seg_ring_rsp:   .quad 0
        .align 4096
        .space 16384
        .globl stack_top
stack_top:
        .space 16384
        .globl isr_stack_top
isr_stack_top:
        .section .note.GNU-stack, "", @progbits
