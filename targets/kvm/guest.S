/* The kvm target's guest code.  GNU assembler, AT&T syntax, x86-64.
 *
 * Assembled at first use by targets/kvm/asm.py (gcc -c, then objcopy -O binary per
 * section) and cached by a hash of this text and the -D values below, as the test
 * kernel is.  Three sections:
 *
 *   .harness    copied once into every VM's RAM at guest-physical STUBS: the exception
 *               stubs, the common handler, FATAL, and the CPL 3 snippets.
 *   .text       templates compile.py copies, one after another, into a program's code.
 *               The operands in capitals (VALUE, ADDR, SLOT, ...) are left undefined here:
 *               the assembler leaves a relocation at each, whose offset and width are where
 *               compile.py writes the value (asm.py reads them from the object file).
 *   .probe32    the 32-bit code of the legacy-paging probe (probe.py).
 *
 * Defined on the command line from targets/kvm/guest.py (one source for the layout):
 *   STUBS HANDLERS UCODE   guest-physical addresses of the stubs, handlers, user snippets
 *   KTOP UTOP              the kernel and user stack tops (virtual, in the physmap)
 *   UCS UDS                the user code and data selectors
 *   ST_EXC ST_RETURNED     result-slot status words (guest.py: the result slot)
 *
 * Register conventions (guest.py, compile.py): r14 = the current call's result slot
 * ([0] status, [8] value or RIP, [16] error code, [24] CR2, [32] rax at a fault),
 * r15 = where the next call starts (a fault resumes there), rbx = the address a call is about.
 */

/* ---------------------------------------------------------------------------------------- */
        .section .harness, "ax"
        .code64

/* One stub per vector, 16 bytes apart (the IDT points at STUBS + 16 * vector): push a zero
 * error code where the CPU pushes none, push the vector, go to the common handler.
 * Vectors with an error code: #DF 8, #TS 10, #NP 11, #SS 12, #GP 13, #PF 14, #AC 17, #CP 21,
 * #VC 29, #SX 30 (SDM Vol. 3A Table 6-1; AMD APM Vol. 2 Table 8-1 for 29 and 30). */
        .macro stub v
        .org (\v) * 16
        .ifeq (\v) == 8 || (\v) == 10 || (\v) == 11 || (\v) == 12 || (\v) == 13 || (\v) == 14 || (\v) == 17 || (\v) == 21 || (\v) == 29 || (\v) == 30
        pushq   $0
        .endif
        pushq   $(\v)
        jmp     common
        .endm

stubs:
        .irp hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
        .irp lo, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
        stub (\hi * 16 + \lo)
        .endr
        .endr

/* The common handler: record the fault in the call's slot and resume at the next call. */
        .org HANDLERS - STUBS
common:
        mov     %rax, 32(%r14)          /* what a CPL 3 snippet loaded */
        pop     %rax                    /* the vector */
        or      $ST_EXC, %eax
        mov     %rax, (%r14)
        pop     %rax                    /* the error code */
        mov     %rax, 16(%r14)
        mov     (%rsp), %rax            /* RIP */
        mov     %rax, 8(%r14)
        mov     %cr2, %rax
        mov     %rax, 24(%r14)
        mov     8(%rsp), %rax           /* CS, above the status's vector */
        shl     $16, %rax
        or      %rax, (%r14)
        movabs  $KTOP, %rsp
        jmp     *%r15

/* Where a fault in the harness's own code resumes (r15 before any call set it). */
        .org HANDLERS - STUBS + 0x300
fatal:
        hlt

/* The CPL 3 snippets (their page is user, read-only).  Each ends in HLT, which raises #GP(0)
 * at CPL 3: the way back to the kernel (kvm-pvm answers `int n` from CPL 3 with #UD).
 * The handler keeps rax, what the snippet loaded, in the slot. */
        .org UCODE - STUBS
user_read:
        mov     (%rbx), %rax
user_read_done:
        hlt

        .org UCODE - STUBS + 0x40
user_write:
        /* a write access (faults report W = 1) that leaves memory as it was and hands back the
         * qword; then the byte 0xCC is stored through the same translation, and rax = that qword
         * with its low byte 0xCC.  No load follows the store: a store that changes an entry of its
         * own walk (a self-referencing table) may make a later access fault (SDM §4.10.4.2 lets
         * the processor use either the old or the new entry). */
        xor     %ecx, %ecx
        lock xadd %rcx, (%rbx)
        movb    $0xcc, (%rbx)
        mov     %rcx, %rax
        mov     $0xcc, %al
user_write_done:
        hlt

        .org UCODE - STUBS + 0x80
user_exec:
        call    *%rbx
user_exec_done:                         /* only reached if the fetched code returns */
        hlt

/* ---------------------------------------------------------------------------------------- */
        .text

/* r14 = this call's slot, r15 = where the next call starts (RESUME is written after the body). */
t_guard:
        movabs  $SLOT, %r14
        movabs  $RESUME, %r15

/* A qword to memory through the physmap: set_pte, the harness's root entry, and the reset. */
t_store:
        movabs  $VALUE, %rax
        movabs  %rax, ADDR

/* read_pte: the entry into the slot's value field. */
t_copy:
        movabs  SRC, %rax
        movabs  %rax, DST

t_mov_cr3:
        movabs  $VALUE, %rax
        mov     %rax, %cr3

t_mov_cr4:
        movabs  $VALUE, %rax
        mov     %rax, %cr4

t_mov_cr0:
        movabs  $VALUE, %rax
        mov     %rax, %cr0

t_wrmsr_efer:
        mov     $0xC0000080, %ecx       /* IA32_EFER */
        mov     $LOW, %eax
        mov     $HIGH, %edx
        wrmsr

/* INVLPG at CPL 0 raises nothing (a non-canonical operand is a no-op). */
t_invlpg:
        movabs  $ADDR, %rbx
        invlpg  (%rbx)

/* DESC: the 16-byte descriptor (PCID, address) in the slot. */
t_invpcid:
        movabs  $KIND, %rax
        movabs  $DESC, %rbx
        invpcid (%rbx), %rax

t_wrpkru:
        mov     $VALUE, %eax
        xor     %ecx, %ecx
        xor     %edx, %edx
        wrpkru

/* RFLAGS = 2 (AC = 0 again) after a CPL 0 access with AC set. */
t_flags_clean:
        pushq   $2
        popfq

/* RFLAGS.AC = 1 for the CPL 0 access that follows. */
t_flags_ac:
        pushq   $0x40002
        popfq

/* CPL 0 accesses (KVM's emulator): DST is the slot's value field. */
t_read:
        movabs  $ADDR, %rbx
        mov     (%rbx), %rax
        movabs  %rax, DST

t_write:                                /* as user_write, then the qword to the slot */
        movabs  $ADDR, %rbx
        xor     %ecx, %ecx
        lock xadd %rcx, (%rbx)
        movb    $0xcc, (%rbx)
        mov     %rcx, %rax
        mov     $0xcc, %al
        movabs  %rax, DST

t_exec:                                 /* the fetched pattern is INT3; a return comes back here */
        movabs  $ADDR, %rbx
        call    *%rbx
        movq    $ST_RETURNED, (%r14)

/* A CPL 3 access: IRETQ to the user snippet ENTRY with SS, RSP, RFLAGS (FLAGS: AC as asked),
 * CS, RIP on the stack. */
t_user:
        movabs  $ADDR, %rbx
        pushq   $UDS
        movabs  $UTOP, %rax
        push    %rax
        pushq   $FLAGS
        pushq   $UCS
        movabs  $ENTRY, %rax
        push    %rax
        iretq

/* The feature probe: STAC and CLAC themselves (KVM's emulator may not implement them). */
t_stac_clac:
        stac
        clac

/* The end of every chunk of program code. */
t_halt:
        hlt

/* The sweep (targets/kvm/sweep.py): one access per record, every record through its own tree.
 * Records of 80 bytes from r13, r12 of them: [0] the root to load (0: keep CR3), [8] the address, [16] the stub
 * below that makes the access, [24] RFLAGS for it (AC as asked), [32] the CPL 3 snippet
 * (sweep_user), then the access's result slot (as a call's: status, value or RIP, error code,
 * CR2, rax at a fault).  r15 = sweep_next: a fault resumes with the next record.  Entered at
 * sweep_pkru (r11 = PKRU) when CR4.PKE is set, else at sweep_next; halts at sweep_end. */
t_sweep:
sweep_pkru:
        mov     %r11d, %eax
        xor     %ecx, %ecx
        xor     %edx, %edx
        wrpkru
sweep_next:
        dec     %r12
        js      sweep_end
        mov     (%r13), %rax            /* a root to load, or 0: the same as the last record's */
        test    %rax, %rax
        jz      1f
        mov     %rax, %cr3
1:      mov     8(%r13), %rbx
        mov     16(%r13), %rdi
        mov     24(%r13), %rcx
        mov     32(%r13), %rdx
        lea     40(%r13), %r14
        add     $80, %r13
        push    %rcx
        popfq
        jmp     *%rdi

sweep_read:                             /* CPL 0 (KVM's emulator), as t_read */
        mov     (%rbx), %rax
        mov     %rax, 8(%r14)
        movq    $0, (%r14)
        jmp     sweep_next

sweep_write:                            /* CPL 0, as t_write */
        xor     %ecx, %ecx
        lock xadd %rcx, (%rbx)
        movb    $0xcc, (%rbx)
        mov     %rcx, %rax
        mov     $0xcc, %al
        mov     %rax, 8(%r14)
        movq    $0, (%r14)
        jmp     sweep_next

sweep_exec:                             /* CPL 0, as t_exec: the pattern's INT3 */
        call    *%rbx
        movq    $ST_RETURNED, (%r14)
        jmp     sweep_next

sweep_user:                             /* CPL 3, as t_user: IRETQ to the snippet (rdx), RFLAGS rcx */
        pushq   $UDS
        movabs  $UTOP, %rax
        push    %rax
        push    %rcx
        pushq   $UCS
        push    %rdx
        iretq

sweep_end:
        hlt

/* ---------------------------------------------------------------------------------------- */
        .section .probe32, "ax"
        .code32
/* Protected mode with 32-bit or PAE paging: a read through a present PDE, then halt. */
probe_legacy:
        mov     (%ebx), %eax
probe_legacy_done:
        hlt
