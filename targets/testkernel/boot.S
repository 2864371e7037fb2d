/* memspec test kernel: a floppy boot sector that does what a multiboot loader does, for
 * machines booted from a BIOS (Bochs).  GNU assembler, AT&T syntax, linked at 0x7C00.
 *
 * Disk layout (built by memspec.targets.bochs.floppy_image): sector 0 is this sector,
 * sectors 1..N the flat kernel image, which is read to its multiboot load address 0x10000.
 * The host patches the parameter block at 0x1F0 (N, the entry point, the memory size).
 *
 * Then, as the Multiboot Specification 0.6.96 section 3.2 ("Machine state") asks:
 * A20 enabled, protected mode with flat 4 GiB code and data segments, paging off,
 * interrupts off, EAX = 0x2BADB002 and EBX = the physical address of a multiboot
 * information structure (at 0x9000: flags mem_lower/mem_upper and cmdline). */
        .code16
        .section .text
        .globl start
start:
        cli
        xorw %ax, %ax
        movw %ax, %ds
        movw %ax, %ss
        movw $0x8FF0, %sp
        movb %dl, drive
        sti

        /* read sectors 1..N to 0x1000:0000 onward, one sector per INT 13h call, so that
         * no transfer crosses a 64 KiB boundary (1.44 MB floppy: 18 sectors, 2 heads) */
        movw $0x1000, %ax
        movw %ax, %es
        movw $1, %si                    /* LBA */
1:      cmpw nsect, %si
        ja 3f
        movw %si, %ax
        xorw %dx, %dx
        movw $18, %cx
        divw %cx                        /* ax = lba / 18, dx = lba % 18 */
        movb %dl, %cl
        incb %cl                        /* sector, 1-based */
        movb %al, %dh
        andb $1, %dh                    /* head */
        shrw $1, %ax
        movb %al, %ch                   /* cylinder */
        movb drive, %dl
        movw $4, %di                    /* retries */
2:      xorw %bx, %bx
        movw $0x0201, %ax               /* read one sector to es:bx */
        int $0x13
        jnc 4f
        xorb %ah, %ah                   /* reset the controller and retry */
        int $0x13
        decw %di
        jnz 2b
        movw $msg_disk, %si
        jmp die
4:      movw %es, %ax
        addw $0x20, %ax
        movw %ax, %es
        incw %si
        jmp 1b

3:      cli
        inb $0x92, %al                  /* A20 through the system control port */
        orb $2, %al
        andb $0xFE, %al
        outb %al, $0x92

        /* the multiboot information at 0x9000, the command line at 0x9100 */
        xorw %ax, %ax
        movw %ax, %es
        movw $0x9000, %di
        movw $64, %cx
        rep stosw
        movl $0x5, 0x9000               /* flags: mem_* (bit 0), cmdline (bit 2) */
        movl $640, 0x9004               /* mem_lower, KiB */
        movl memup, %eax
        movl %eax, 0x9008               /* mem_upper, KiB above 1 MiB */
        movl $0x9100, 0x9010            /* cmdline */
        movw $cmdline, %si
        movw $0x9100, %di
        movw $32, %cx
        rep movsb

        lgdt gdtr
        movl %cr0, %eax
        orl $1, %eax
        movl %eax, %cr0
        ljmp $0x08, $pm32

die:    lodsb                           /* print the message on port 0xE9 and stop */
        testb %al, %al
        jz 5f
        outb %al, $0xE9
        jmp die
5:      cli
        hlt
        jmp 5b

        .code32
pm32:   movw $0x10, %ax
        movw %ax, %ds
        movw %ax, %es
        movw %ax, %fs
        movw %ax, %gs
        movw %ax, %ss
        movl $0x8FF0, %esp
        movl $0x2BADB002, %eax
        movl $0x9000, %ebx
        jmp *entry

        .p2align 3
gdt:    .quad 0
        .quad 0x00CF9A000000FFFF        /* 0x08: code, base 0, limit 4 GiB, 32-bit */
        .quad 0x00CF92000000FFFF        /* 0x10: data, base 0, limit 4 GiB */
gdtr:   .word gdtr - gdt - 1
        .long gdt
drive:  .byte 0
msg_disk: .asciz "boot: disk read failed\n"
cmdline: .asciz ""

        .org 0x1F0
nsect:  .word 0                         /* patched: sectors of the kernel image */
        .word 0
entry:  .long 0                         /* patched: the multiboot header's entry_addr */
memup:  .long 0                         /* patched: mem_upper in KiB */
        .org 0x1FE
        .byte 0x55, 0xAA
