/* QEMU TCG: in 64-bit mode, MOV SS with a null selector at CPL 1 makes the CPL 0.
 *
 * A multiboot (v1) image for qemu-system-x86_64 -kernel.  It enters long mode, drops to CPL 1
 * with IRETQ (IOPL 3, so that CPL 1 may use the serial port and the exit port), and runs:
 *   1. MOV from CR0 at CPL 1: must raise #GP(0) (SDM Vol. 2B MOV CR: "#GP(0) If the current
 *      privilege level is not 0") -- the control, showing the #GP path works;
 *   2. MOV SS with selector 0x1 (null, RPL 1 = CPL): allowed in 64-bit mode at CPL < 3 when
 *      RPL = CPL (SDM Vol. 2B MOV, 64-Bit Mode Exceptions); CS, and so the CPL, is unchanged;
 *   3. MOV from CR0 again: must raise #GP(0) again.
 * It prints what happened on COM1 and ends QEMU through isa-debug-exit: exit status 1 when the
 * third step raised #GP (conforms), 3 when it completed (the CPU ran it at CPL 0: reproduced),
 * 5 on anything else.  Built with -DSS_SELECTOR=0x21, step 2 loads the DPL 1 data segment
 * instead: the same steps then conform on QEMU, which shows the image itself is sound.
 *
 * Build: gcc -c qemu-null-ss-cpl.S && ld -m elf_x86_64 -Ttext=0x100000 -e start32 --no-warn-rwx-segments \
 *          -o qemu-null-ss-cpl.elf qemu-null-ss-cpl.o && objcopy -O binary qemu-null-ss-cpl.elf qemu-null-ss-cpl.bin
 * Run:   qemu-system-x86_64 -accel tcg -cpu max -m 32 -nodefaults -no-user-config -display none \
 *          -no-reboot -serial stdio -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel qemu-null-ss-cpl.bin
 */
#ifndef SS_SELECTOR
#define SS_SELECTOR 0x1                   /* -DSS_SELECTOR=0x21 (the DPL 1 data segment): the control */
#endif
#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00010000               /* the address fields below: a flat image */
#define COM1 0x3f8
#define EXIT_PORT 0xf4
#define SEL_CODE0 0x08
#define SEL_DATA0 0x10
#define SEL_CODE1 0x18
#define SEL_DATA1 0x20
#define SEL_TSS   0x28

        .text
        .code32
mb_header:
        .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
        .long mb_header, mb_header, data_end, image_end, start32

        .globl start32
start32:
        cli
        /* identity map the first 2 MiB: PML4 at 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> 2 MiB page */
        movl $0x1000, %edi
        movl $0x3000 / 4, %ecx
        xorl %eax, %eax
        rep stosl
        movl $0x2007, 0x1000
        movl $0x3007, 0x2000
        movl $0x00000087, 0x3000          /* P|RW|US|PS */
        movl %cr4, %eax
        orl $0x20, %eax                   /* PAE */
        movl %eax, %cr4
        movl $0x1000, %eax
        movl %eax, %cr3
        movl $0xC0000080, %ecx            /* EFER.LME */
        rdmsr
        orl $0x100, %eax
        wrmsr
        movl %cr0, %eax
        orl $0x80000001, %eax             /* PG|PE */
        movl %eax, %cr0
        lgdt gdt_ptr
        ljmp $SEL_CODE0, $start64

        .code64
start64:
        movw $SEL_DATA0, %ax
        movw %ax, %ss
        movw %ax, %ds
        movw %ax, %es
        movq $stack0_top, %rsp
        /* the TSS descriptor (its base is known at run time only) and RSP0 */
        movq $tss, %rax
        movw %ax, gdt + SEL_TSS + 2
        shrq $16, %rax
        movb %al, gdt + SEL_TSS + 4
        movb %ah, gdt + SEL_TSS + 7
        shrq $16, %rax
        movl %eax, gdt + SEL_TSS + 8
        movq $stack0_top, %rax
        movq %rax, tss + 4
        movw $SEL_TSS, %ax
        ltr %ax
        /* IDT: every vector to `unexpected`, #GP (13) to `on_gp`; 64-bit interrupt gates, DPL 0 */
        xorl %ecx, %ecx
1:      movq $unexpected, %rax
        cmpl $13, %ecx
        jne 2f
        movq $on_gp, %rax
2:      movq %rcx, %rdi
        shlq $4, %rdi
        addq $idt, %rdi
        movw %ax, (%rdi)
        movw $SEL_CODE0, 2(%rdi)
        movw $0x8E00, 4(%rdi)
        shrq $16, %rax
        movw %ax, 6(%rdi)
        shrq $16, %rax
        movl %eax, 8(%rdi)
        movl $0, 12(%rdi)
        incl %ecx
        cmpl $32, %ecx
        jb 1b
        lidt idt_ptr
        /* to CPL 1 */
        pushq $(SEL_DATA1 | 1)
        pushq $stack1_top
        pushq $0x3002                     /* IOPL 3 */
        pushq $(SEL_CODE1 | 1)
        pushq $ring1
        iretq

ring1:
        leaq msg_cpl1(%rip), %rsi
        call puts
        movl $0, phase(%rip)
        movq %cr0, %rax                   /* 1. must #GP: on_gp resumes at after_control */
        leaq msg_no_gp(%rip), %rsi
        call puts
        movb $2, %al
        outb %al, $EXIT_PORT
after_control:
        movl $1, phase(%rip)
        movw $SS_SELECTOR, %ax            /* 2. null selector, RPL 1 = CPL */
        movw %ax, %ss
        leaq msg_loaded(%rip), %rsi
        call puts
        movq %cr0, %rax                   /* 3. must #GP */
        leaq msg_bug(%rip), %rsi
        call puts
        movb $1, %al
        outb %al, $EXIT_PORT              /* exit status 3: reproduced */

/* #GP: the frame is error code, RIP, CS, RFLAGS, RSP, SS */
on_gp:
        cmpl $0, phase(%rip)
        jne 1f
        leaq msg_control(%rip), %rsi
        call puts
        movq $after_control, %rax
        movq %rax, 8(%rsp)
        addq $8, %rsp                     /* the error code */
        iretq
1:      leaq msg_ok(%rip), %rsi
        call puts
        movb $0, %al
        outb %al, $EXIT_PORT              /* exit status 1: conforms */
unexpected:
        leaq msg_unexpected(%rip), %rsi
        call puts
        movb $2, %al
        outb %al, $EXIT_PORT              /* exit status 5 */
        hlt

puts:                                     /* %rsi: a NUL-terminated string, to COM1 */
        movw $COM1, %dx
1:      lodsb
        testb %al, %al
        jz 2f
        outb %al, %dx
        jmp 1b
2:      ret

        .data
        .align 16
gdt:
        .quad 0
        .quad 0x00af9a000000ffff          /* 0x08: 64-bit code, DPL 0 */
        .quad 0x00cf92000000ffff          /* 0x10: data, DPL 0 */
        .quad 0x00afba000000ffff          /* 0x18: 64-bit code, DPL 1 */
        .quad 0x00cfb2000000ffff          /* 0x20: data, DPL 1 */
        .quad 0x0000890000000067, 0       /* 0x28: 64-bit TSS (base filled in), limit 0x67 */
gdt_end:
gdt_ptr:
        .word gdt_end - gdt - 1
        .quad gdt
idt_ptr:
        .word 32 * 16 - 1
        .quad idt
phase:  .long 0
msg_cpl1:       .asciz "at CPL 1 (CS 0x19, IOPL 3)\n"
msg_control:    .asciz "1. MOV from CR0 at CPL 1: #GP (the control)\n"
msg_no_gp:      .asciz "1. MOV from CR0 at CPL 1 completed: the control failed\n"
msg_loaded:     .asciz "2. MOV SS at CPL 1 completed (a null selector with RPL = CPL: allowed in 64-bit mode)\n"
msg_ok:         .asciz "3. MOV from CR0 at CPL 1: #GP: the CPL is still 1\nVERDICT: CONFORMS\n"
msg_bug:        .asciz "3. MOV from CR0 at CPL 1 completed: the CPU ran it at CPL 0 after the null SS load\nVERDICT: REPRODUCED (a null SS loaded at CPL 1 made the CPL 0)\n"
msg_unexpected: .asciz "an unexpected exception\nVERDICT: ERROR\n"
data_end:

        .bss
        .align 4096
idt:    .skip 32 * 16
tss:    .skip 0x68
        .align 16
        .skip 4096
stack0_top:
        .skip 4096
stack1_top:
image_end:
