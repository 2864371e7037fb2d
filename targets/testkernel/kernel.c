/* memspec test kernel: probes x86-64 paging on a real (or emulated) CPU, and nested paging as
 * an SVM (AMD) or VMX (Intel EPT) hypervisor.
 *
 * The host sends one command per line and the kernel answers one line per
 * command (the protocol is described in README.md beside this file).  Every
 * operation that can fault runs under run_guarded(): the exception's vector,
 * error code and CR2 -- pushed and loaded by the processor itself -- are the
 * answer, and the kernel carries on with the next command.
 */
typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

#define KBASE 0xFFFFFFFFC0000000UL
#define PHYS(pa) ((volatile u64 *)(KBASE + (u64)(pa)))
#define H_BOOT4 0x1000UL
#define H_BOOT5 0x2000UL
#define H_PT 0x7000UL
#define HARNESS_LOW 0x100000UL
#define HARNESS_SLOT 511
/* root[511] of every program root: P|RW|US|A (A preset, so that the CPU never changes it) */
#define HARNESS_ENTRY4 (0x5000UL | 0x27)
#define HARNESS_ENTRY5 (0x1000UL | 0x27)

#define CR0_PE (1UL << 0)
#define CR0_NW (1UL << 29)
#define CR0_CD (1UL << 30)
#define CR0_PG (1UL << 31)
#define CR4_PAE (1UL << 5)
#define CR4_LA57 (1UL << 12)
#define CR4_PCIDE (1UL << 17)
#define EFER_LME (1UL << 8)

/* entry.S */
extern u32 mbi_phys;
extern u64 gdt[], gdt_tss[];
extern u64 isr_table[], isr_user_return[];
extern char _user_start[], isr_stack_top[];
extern char user_read[], user_write[], user_fetch[];
extern volatile u64 g_fault_vec, g_fault_err, g_fault_rip, g_fault_cr2, g_fault_rax;
extern void switch_mode(u64 cr0, u64 cr4, u64 efer, u64 new_root, u64 cur_root);
extern void run_guarded(void *fn, u64 a, u64 b, u64 c);
extern char op_read[], op_write[], op_fetch[], op_user[], op_cr0[], op_cr3[], op_cr4[], op_efer[];
extern char op_invlpg[], op_invpcid[], op_wrpkru[], op_wrmsr[];

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline u64 rdcr0(void) { u64 v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline u64 rdcr3(void) { u64 v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline u64 rdcr4(void) { u64 v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void wrcr3(u64 v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
static inline void wrcr4(u64 v) { __asm__ volatile("mov %0, %%cr4" : : "r"(v) : "memory"); }
static inline u64 rdmsr(u32 msr) {
    u32 lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return ((u64)hi << 32) | lo;
}
static inline void cpuid(u32 leaf, u32 sub, u32 r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

/* ---- console: output to COM1 and/or port 0xE9; input from COM1 or a batch module ---- */
#define COM1 0x3F8
static int out_serial = 1, out_e9 = 0;
static const char *batch;
static u64 batch_len, batch_pos;
static char batch_buf[65536];

static int tx_room;

/* Shared-memory transport (QEMU's ivshmem-plain, found on the PCI bus at start): the host
 * writes a whole batch of command lines there and sends "@" on COM1; the kernel runs them
 * with the console switched to the shared buffers and answers "@ <bytes>" on COM1.  The
 * UART's 16-byte FIFO costs a host round trip per 16 bytes; this costs one per batch.
 * Layout: +16 input length, +24 output length (kept current line by line, so that a host
 * can read what was answered before a crash), input at +64, output at +SHM_OUT. */
#define SHM_OUT (512UL << 10)
#define SHM_SIZE (1UL << 20)
static volatile u8 *shm;
static int shm_active;
static u64 shm_in_pos, shm_out_pos;

/* the built-in program's mode (MEMSPEC_BUILTIN): a command's answer is captured, not sent */
static char *capture;
static int capture_n;

static void putc(char c) {
    if (capture) {
        if (capture_n < 255) capture[capture_n++] = c;
        return;
    }
    if (shm_active) {
        if (shm_out_pos < SHM_SIZE - SHM_OUT) shm[SHM_OUT + shm_out_pos++] = (u8)c;
        if (c == '\n') *(volatile u64 *)(shm + 24) = shm_out_pos;
        return;
    }
    if (out_serial) {
        /* THRE means the 16-byte transmit FIFO is empty: one status read per 16 bytes */
        while (!tx_room) {
            if (inb(COM1 + 5) & 0x20) tx_room = 16;
        }
        outb(COM1, (u8)c);
        tx_room--;
    }
    if (out_e9)
        outb(0xE9, (u8)c);
}

static void puts(const char *s) { while (*s) putc(*s++); }

static void puthex(u64 v) {
    char buf[17];
    int i = 16;
    buf[16] = 0;
    do { buf[--i] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
    puts(buf + i);
}

static int getc(void) {
    if (shm_active) {
        u64 len = *(volatile u64 *)(shm + 16);
        return shm_in_pos < len && shm_in_pos < SHM_OUT - 64 ? shm[64 + shm_in_pos++] : -1;
    }
    if (batch)
        return batch_pos < batch_len ? batch[batch_pos++] : -1;
    while (!(inb(COM1 + 5) & 1))
        __asm__ volatile("sti; hlt; cli");   /* COM1's receive interrupt wakes us */
    return inb(COM1);
}

static void serial_init(int irq) {
    outb(COM1 + 1, 0);
    outb(COM1 + 3, 0x80);
    outb(COM1 + 0, 1);      /* 115200 baud (meaningless under emulation) */
    outb(COM1 + 1, 0);
    outb(COM1 + 3, 0x03);   /* 8N1 */
    outb(COM1 + 2, 0xC7);
    outb(COM1 + 4, 0x0B);   /* DTR, RTS, OUT2 (gates the IRQ line on a PC) */
    if (irq)
        outb(COM1 + 1, 0x01);
}

static void pic_init(void) {
    outb(0x20, 0x11); outb(0xA0, 0x11);
    outb(0x21, 0x20); outb(0xA1, 0x28);
    outb(0x21, 0x04); outb(0xA1, 0x02);
    outb(0x21, 0x01); outb(0xA1, 0x01);
    outb(0x21, 0xEF); outb(0xA1, 0xFF);     /* only IRQ 4 (COM1) */
}

/* ---- descriptor tables ---- */
struct tss {
    u32 rsv0;
    u64 rsp[3];
    u64 rsv1;
    u64 ist[7];
    u64 rsv2;
    u16 rsv3, iomap;
} __attribute__((packed));
static struct tss tss __attribute__((aligned(16)));
static u64 idt[512] __attribute__((aligned(4096)));
static struct { u16 limit; u64 base; } __attribute__((packed)) idtr;

static void set_gate(int vec, u64 fn, int dpl) {
    idt[2 * vec] = (fn & 0xFFFF) | (0x08UL << 16) | ((u64)(0x8E | (dpl << 5)) << 40) |
                   ((fn >> 16) & 0xFFFF) << 48;
    idt[2 * vec + 1] = fn >> 32;
}

static void tables_init(void) {
    for (int v = 0; v < 48; v++)
        set_gate(v, isr_table[v], v == 3 ? 3 : 0);   /* INT3 from ring 3: the fetch probe's end */
    set_gate(0x81, isr_user_return[0], 3);
    idtr.limit = sizeof idt - 1;
    idtr.base = (u64)idt;
    __asm__ volatile("lidt %0" : : "m"(idtr));
    tss.rsp[0] = (u64)isr_stack_top;
    tss.iomap = sizeof tss;
    u64 base = (u64)&tss, limit = sizeof tss - 1;
    gdt_tss[0] = (limit & 0xFFFF) | ((base & 0xFFFFFF) << 16) | (0x89UL << 40) |
                 ((limit >> 16) & 0xF) << 48 | ((base >> 24) & 0xFF) << 56;
    gdt_tss[1] = base >> 32;
    __asm__ volatile("ltr %w0" : : "r"(0x30));
    /* the ring-3 stubs' page is the harness's only user page */
    u64 user_pa = (u64)_user_start - KBASE;
    PHYS(H_PT)[user_pa >> 12] |= 4;
    __asm__ volatile("invlpg (%0)" : : "r"(_user_start) : "memory");
}

/* ---- features (CPUID) ---- */
static u32 f1c, f1d, f7b, f7c, f7d, f81c, f81d, f88a, f8ad, fmax, fxmax;
static u64 cr4_ok, efer_ok, maxphy;

static void features_init(void) {
    u32 r[4];
    cpuid(0, 0, r); fmax = r[0];
    cpuid(1, 0, r); f1c = r[2]; f1d = r[3];
    if (fmax >= 7) { cpuid(7, 0, r); f7b = r[1]; f7c = r[2]; f7d = r[3]; }
    cpuid(0x80000000, 0, r); fxmax = r[0];
    if (fxmax >= 0x80000001) { cpuid(0x80000001, 0, r); f81c = r[2]; f81d = r[3]; }
    if (fxmax >= 0x80000008) { cpuid(0x80000008, 0, r); f88a = r[0]; }
    if (fxmax >= 0x8000000A && (f81c & (1 << 2))) { cpuid(0x8000000A, 0, r); f8ad = r[3]; }
    /* what boot() accepts: the paging-relevant bits this CPU enumerates */
    cr4_ok = 1UL << 4 | CR4_PAE | 1UL << 7 | 1UL << 9 | 1UL << 10;   /* PSE PAE PGE OSFXSR OSXMMEXCPT */
    if (f7c & (1 << 16)) cr4_ok |= CR4_LA57;
    if (f1c & (1 << 17)) cr4_ok |= CR4_PCIDE;
    if (f1c & (1 << 26)) cr4_ok |= 1UL << 18;                /* OSXSAVE */
    if (f7b & (1 << 7)) cr4_ok |= 1UL << 20;                 /* SMEP */
    if (f7b & (1 << 20)) cr4_ok |= 1UL << 21;                /* SMAP */
    if (f7c & (1 << 3)) cr4_ok |= 1UL << 22;                 /* PKE */
    efer_ok = 1UL << 0 | 1UL << 8 | 1UL << 10;
    if (f81d & (1 << 20)) efer_ok |= 1UL << 11;              /* NXE */
    maxphy = (f88a & 0xFF) ? (f88a & 0xFF) : 36;
}

/* ---- physical memory: the pattern, and a log of what the program changed ---- */
static u64 ram_end;
#define LOG_MAX 16384
static u64 wlog[LOG_MAX];
static u64 nlog;
static int full_refill;

static inline u64 pattern(u64 pa) { return (pa << 8) | 0xCC; }

static void fill_pattern(void) {
    for (u64 pa = HARNESS_LOW; pa < ram_end; pa += 8)
        *PHYS(pa) = pattern(pa);
}

static void note_write(u64 pa) {
    if (nlog < LOG_MAX) wlog[nlog++] = pa;
    else full_refill = 1;
}

static void restore_memory(void) {
    if (full_refill) fill_pattern();
    else for (u64 i = 0; i < nlog; i++) *PHYS(wlog[i]) = pattern(wlog[i]);
    nlog = 0;
    full_refill = 0;
}

static int pa_ok(u64 pa) { return pa >= HARNESS_LOW && pa + 8 <= ram_end && !(pa & 7); }

/* The harness's own slot in a root table: its code, data and the user stub page. */
static int install_slot(u64 root_pa) {
    if (!pa_ok(root_pa)) return 0;
    u64 pa = root_pa + 8 * HARNESS_SLOT;
    note_write(pa);
    *PHYS(pa) = (rdcr4() & CR4_LA57) ? HARNESS_ENTRY5 : HARNESS_ENTRY4;
    return 1;
}

static int top_level(void) { return (rdcr4() & CR4_LA57) ? 5 : 4; }

static int canonical(u64 la) {
    int top = top_level() == 5 ? 56 : 47;
    u64 hi = la >> top;
    return hi == 0 || hi == (~0UL >> top);
}

/* linear addresses in the harness's top-level slot are refused (the program's are 0..510) */
static int harness_slot(u64 la) {
    return canonical(la) && ((la >> (top_level() == 5 ? 48 : 39)) & 0x1FF) == HARNESS_SLOT;
}

/* Would this access let the CPU write the harness's own memory (a store or an A/D update
 * below HARNESS_LOW) or run code other than the pattern's int3?  A software walk of the
 * current tables with the SDM's rights (Vol. 3A 4.5, 4.6): only an access the walk says
 * the CPU will *allow* is refused; one that must fault is left to the CPU, so its #PF is
 * still observed.  A stale TLB entry could differ: the price of not trusting the program. */
static int walk_leaves_ram;     /* the last harms_harness walk reached a table beyond the end of RAM */
static int harms_harness(u64 la, u64 op, u64 cpl, u64 ac) {
    walk_leaves_ram = 0;
    /* a non-canonical address raises #GP(0) before any walk (SDM Vol. 3A 4.5, Vol. 1 3.3.7.1):
     * nothing is read, written or run, so the CPU is always left to answer */
    if (!canonical(la)) return 0;
    u64 cr0 = rdcr0(), cr4 = rdcr4(), efer = rdmsr(0xC0000080);
    u64 rsvd_hi = (maxphy < 52 ? ((1UL << 52) - 1) & ~((1UL << maxphy) - 1) : 0) |
                  ((efer & (1UL << 11)) ? 0 : 1UL << 63);
    u64 table = rdcr3() & 0x000FFFFFFFFFF000UL;
    int user = 1, writable = 1, xd = 0;
    for (int lvl = top_level(); lvl >= 1; lvl--) {
        if (table < HARNESS_LOW) return 1;          /* the CPU would read, maybe set A, there */
        if (table + 4096 > ram_end) { walk_leaves_ram = 1; return 0; }
        u64 e = *PHYS(table + 8 * ((la >> (12 + 9 * (lvl - 1))) & 0x1FF));
        if (!(e & 1)) return 0;                                     /* not present: #PF */
        if (e & rsvd_hi) return 0;                                  /* reserved: #PF */
        int leaf = lvl == 1 || ((lvl == 2 || lvl == 3) && (e & 0x80));
        if ((lvl >= 4 && (e & 0x80)) || (lvl == 3 && leaf && (e & 0x3FFFE000UL)) ||
            (lvl == 2 && leaf && (e & 0x1FE000UL)) || (lvl == 3 && leaf && !(f81d & (1 << 26))))
            return 0;
        user &= !!(e & 4);
        writable &= !!(e & 2);
        xd |= !!(e >> 63);
        u64 next = e & 0x000FFFFFFFFFF000UL;
        if (!leaf) { table = next; continue; }
        /* rights (SDM 4.6.1): a fault here means the CPU must not reach memory */
        int nxe = !!(efer & (1UL << 11)), wp = !!(cr0 & (1UL << 16));
        if (cpl == 3) {
            if (!user || (op == 1 && !writable) || (op == 2 && nxe && xd)) return 0;
        } else if (op == 2) {
            if ((user && (cr4 & (1UL << 20))) || (nxe && xd)) return 0;
        } else {
            if (user && (cr4 & (1UL << 21)) && !ac) return 0;
            if (op == 1 && wp && !writable) return 0;
        }
        if ((cr4 & (1UL << 22)) && user && op != 2) {
            u32 pkru = 0, key = (e >> 59) & 0xF;
            __asm__ volatile("xor %%ecx, %%ecx; rdpkru" : "=a"(pkru) : : "rcx", "rdx");
            if ((pkru >> (2 * key)) & 1) return 0;
            if (op == 1 && ((pkru >> (2 * key + 1)) & 1) && (cpl == 3 || wp)) return 0;
        }
        u64 size = lvl == 1 ? 1UL << 12 : lvl == 2 ? 1UL << 21 : 1UL << 30;
        u64 pa = (next & ~(size - 1)) | (la & (size - 1));
        if (op == 2)    /* run only the pattern's int3, never entries or unbacked memory */
            return pa < HARNESS_LOW || pa + 8 > ram_end || *PHYS(pa & ~7UL) != pattern(pa & ~7UL);
        return op == 1 && pa < HARNESS_LOW;
    }
    return 0;
}

/* ---- replies ---- */
/* The answer to a guarded operation, as short as it can be (the serial line is the
 * bottleneck): "k" for a normal end, "v RAX" for a load or store that completed, "k" for a
 * fetch that reached the pattern's int3, else "x VECTOR ERRCODE CR2 RIP". */
#define DATA_OP 1
#define FETCH_OP 2
static void reply_x(int kind) {
    u64 v = g_fault_vec;
#ifdef MEMSPEC_BROKEN_ERRCODE   /* a deliberately wrong kernel for memspec's own tests: W/R inverted */
    if (v == 14) g_fault_err ^= 2;
#endif
    if (kind == DATA_OP && (v == (u64)-1 || v == 0x81)) {
        puts("v "); puthex(g_fault_rax); putc('\n');
        return;
    }
    if ((kind == FETCH_OP && v == 3) || (kind == 0 && v == (u64)-1)) {
        puts("k\n");
        return;
    }
    putc('x'); putc(' '); puthex(v);
    putc(' '); puthex(g_fault_err);
    putc(' '); puthex(v == 14 ? g_fault_cr2 : 0);
    putc(' '); puthex(g_fault_rip);
    putc('\n');
}
static void reply_e(const char *why) { puts("e "); puts(why); putc('\n'); }
/* the harness cannot stage this operation safely: not the program's mistake (which is `e`,
 * EINVAL as the model predicts) and no answer of the CPU's; the host reports it unsupported */
static void reply_r(const char *why) { puts("r "); puts(why); putc('\n'); }
static void reply_k(void) { puts("k\n"); }

static void guarded(void *fn, u64 a, u64 b, u64 c) {
    g_fault_err = g_fault_cr2 = g_fault_rip = g_fault_rax = 0;
    run_guarded(fn, a, b, c);
}

static void vmx_disable(void);

/* ---- boot(cr0, cr4, efer): paging off, load, paging on ---- */
static const char *boot(u64 cr0, u64 cr4, u64 efer) {
    if (!(cr0 & CR0_PG) || !(cr0 & CR0_PE) || !(cr4 & CR4_PAE) || !(efer & EFER_LME))
        return "the harness runs in IA-32e mode: boot needs CR0.PG|PE, CR4.PAE and EFER.LME";
    if (cr0 >> 32 || ((cr0 & CR0_NW) && !(cr0 & CR0_CD)))
        return "CR0 value not loadable";
    if (cr4 & ~cr4_ok) return "CR4 bits this CPU lacks";
    if (efer & ~efer_ok) return "EFER bits this CPU lacks";
    if ((cr4 & CR4_PCIDE) && (rdcr3() & 0xFFF)) return "CR4.PCIDE with a nonzero PCID in CR3";
    /* leaving IA-32e mode clears CR0.PG, which CR4.PCIDE forbids (#GP, SDM Vol. 2B MOV CR), and
     * CR0.WP, which CR4.CET forbids: a program may have set either */
    if (rdcr4() & (CR4_PCIDE | 1UL << 23)) wrcr4(rdcr4() & ~(CR4_PCIDE | 1UL << 23));
    vmx_disable();      /* VMX operation forbids clearing CR0.PG (SDM Vol. 3C 24.8) */
    u64 root = rdcr3() & 0x000FFFFFFFFFF000UL;
    u64 cur = (rdcr4() & CR4_LA57) ? H_BOOT5 : H_BOOT4;
    u64 nxt = (cr4 & CR4_LA57) ? H_BOOT5 : H_BOOT4;
    switch_mode(cr0, cr4, efer, nxt, cur);
    if (root != H_BOOT4 && root != H_BOOT5) {
        if (install_slot(root)) wrcr3(root);
    } else {
        wrcr3(nxt);
    }
    if (cr4 & CR4_PCIDE) wrcr4(rdcr4() | CR4_PCIDE);
    return 0;
}

/* ---- virtualization: AMD SVM with nested paging (AMD APM Vol. 2 ch. 15, 15.25) and
 * Intel VMX with EPT (Intel SDM Vol. 3C ch. 24-29) ----
 * The guest runs the harness's own stubs at the same linear addresses as the host: the
 * guest's root gets slot 511 mapping gva KBASE + x to gpa g_base + x, and the program's
 * nested (NPT or EPT) root gets slot nslot mapping gpa g_base + x to hpa x (x < 1 GiB).
 * nslot is the highest top-level slot below 2^MAXPHYADDR (511 with 48 physical address bits,
 * 1 with Bochs' 40), g_base = nslot << 39.  Every exception in the guest is intercepted (no
 * guest IDT is used); VMMCALL (SVM) or VMCALL (VMX) ends an access. */
#define MAX_VMS 4
#define EFER_SVME (1UL << 12)
#define CR0_NE (1UL << 5)
#define CR4_VMXE (1UL << 13)
#define KIND_EPT 1
#define KIND_NPT 2
static u8 vmcb[MAX_VMS][4096] __attribute__((aligned(4096)));
static u8 hsave[4096] __attribute__((aligned(4096)));
static u64 h_npdpt[512] __attribute__((aligned(4096)));
static u64 h_npd[512] __attribute__((aligned(4096)));
static u64 h_gpml4[512] __attribute__((aligned(4096)));
static u64 h_gpdpt[512] __attribute__((aligned(4096)));
static u64 h_gpd[512] __attribute__((aligned(4096)));
static u64 h_gpt[512] __attribute__((aligned(4096)));
static int vm_booted[MAX_VMS], vm_flush[MAX_VMS], cur_vm = -1, virt_tables;
static u64 nslot, g_base;
extern int svm_run(u64 vmcb_pa, u64 rdi);
extern char gk_read[], gk_write[], gu_read[], gu_write[];

static u64 va2pa(const void *p) { return (u64)p - KBASE; }
#define V8(v, o) (*(volatile u8 *)&vmcb[v][o])
#define V16(v, o) (*(volatile u16 *)&vmcb[v][o])
#define V32(v, o) (*(volatile u32 *)&vmcb[v][o])
#define V64(v, o) (*(volatile u64 *)&vmcb[v][o])

static int svm_ok(void) { return (f81c & (1 << 2)) && (f8ad & 1); }

/* VMX: capability MSRs (SDM Vol. 3C Appendix A), read once at start when CPUID.01H:ECX[5] = 1 */
static u64 vmx_basic, vmx_pin, vmx_proc, vmx_exit, vmx_entry, vmx_proc2, vmx_ept, vmx_misc;
static u64 vmx_cr0f0, vmx_cr0f1, vmx_cr4f0, vmx_cr4f1;
static int vmx_on;
static u8 vmxon_region[4096] __attribute__((aligned(4096)));
static u8 vmcs[MAX_VMS][4096] __attribute__((aligned(4096)));
static u64 h_eptpdpt[512] __attribute__((aligned(4096)));
static u64 h_eptpd[512] __attribute__((aligned(4096)));
static int vm_kind[MAX_VMS];
static u64 vx_eptp[MAX_VMS], vx_gcr3[MAX_VMS], vx_gcr4[MAX_VMS], vx_gefer[MAX_VMS];
extern u64 vmx_run(u64 rdi);
extern char vmx_exit_stub[], gkv_read[], gkv_write[], guv_read[], guv_write[], op_vmxon[];
extern volatile u64 g_vmx_rax;

static int vmx_ok(void) { return (f1c & (1 << 5)) && (vmx_proc >> 63 & 1) && (vmx_proc2 >> 33 & 1); }

static void vmx_probe(void) {
    if (!(f1c & (1 << 5))) return;
    vmx_basic = rdmsr(0x480);
    vmx_pin = rdmsr(0x481);
    vmx_proc = rdmsr(0x482);
    vmx_exit = rdmsr(0x483);
    vmx_entry = rdmsr(0x484);
    vmx_misc = rdmsr(0x485);
    vmx_cr0f0 = rdmsr(0x486); vmx_cr0f1 = rdmsr(0x487);
    vmx_cr4f0 = rdmsr(0x488); vmx_cr4f1 = rdmsr(0x489);
    if (vmx_proc >> 63 & 1) vmx_proc2 = rdmsr(0x48B);
    /* IA32_VMX_EPT_VPID_CAP exists only if EPT or VPID can be enabled (SDM A.10) */
    if (vmx_proc2 >> 33 & 1 || vmx_proc2 >> 37 & 1) vmx_ept = rdmsr(0x48C);
}

static void vmx_reply(void) {
    if (!(f1c & (1 << 5))) { reply_e("no VMX"); return; }
    u64 v[] = {vmx_basic, vmx_pin, vmx_proc, vmx_exit, vmx_entry, vmx_proc2, vmx_ept, vmx_misc,
               vmx_cr0f0, vmx_cr0f1, vmx_cr4f0, vmx_cr4f1, rdmsr(0x3A)};
    putc('M');
    for (unsigned i = 0; i < sizeof v / sizeof v[0]; i++) { putc(' '); puthex(v[i]); }
    putc('\n');
}

static void virt_tables_init(void) {
    if (virt_tables) return;
    /* nested walks are user accesses: U/S = 1; EPT leaves: R|W|X, WB, PS, A|D preset */
    h_npdpt[0] = va2pa(h_npd) | 0x27;
    for (u64 i = 0; i < 512; i++) h_npd[i] = (i << 21) | 0xE7;
    h_eptpdpt[0] = va2pa(h_eptpd) | 0x107;
    for (u64 i = 0; i < 512; i++) h_eptpd[i] = (i << 21) | 0x3F7;
    h_gpml4[511] = (g_base + va2pa(h_gpdpt)) | 0x27;
    h_gpdpt[511] = (g_base + va2pa(h_gpd)) | 0x27;
    h_gpd[0] = (g_base + va2pa(h_gpt)) | 0x27;
    for (u64 i = 1; i < 512; i++) h_gpd[i] = (g_base + (i << 21)) | 0xE3;
    for (u64 j = 0; j < 512; j++) h_gpt[j] = (g_base + (j << 12)) | 0x63;
    h_gpt[((u64)_user_start - KBASE) >> 12] |= 4;
    virt_tables = 1;
}

/* The hypervisor's software walk of a 4-level nested table (no rights): hpa, or ~0 if unmapped. */
static u64 npt_walk(u64 root, u64 gpa) {
    u64 table = root & 0x000FFFFFFFFFF000UL;
    for (int lvl = 4; lvl >= 1; lvl--) {
        if (table + 4096 > ram_end) return ~0UL;
        u64 e = *PHYS(table + 8 * ((gpa >> (12 + 9 * (lvl - 1))) & 0x1FF));
        if (!(e & 1)) return ~0UL;
        u64 next = e & 0x000FFFFFFFFFF000UL;
        if (lvl == 1 || ((lvl == 2 || lvl == 3) && (e & 0x80))) {
            u64 size = lvl == 1 ? 1UL << 12 : lvl == 2 ? 1UL << 21 : 1UL << 30;
            return (next & ~(size - 1)) | (gpa & (size - 1));
        }
        table = next;
    }
    return ~0UL;
}

/* The same for a 4-level EPT (SDM Vol. 3C 29.3.2): an entry is present if any of bits 2:0 is
 * set; a misconfigured one (29.3.3.1) maps nothing, as the processor would not use it. */
static u64 ept_walk(u64 eptp, u64 gpa) {
    u64 table = eptp & 0x000FFFFFFFFFF000UL;
    u64 rsvd = maxphy < 52 ? ((1UL << 52) - 1) & ~((1UL << maxphy) - 1) : 0;
    for (int lvl = 4; lvl >= 1; lvl--) {
        if (table + 4096 > ram_end) return ~0UL;
        u64 e = *PHYS(table + 8 * ((gpa >> (12 + 9 * (lvl - 1))) & 0x1FF));
        if (!(e & 7)) return ~0UL;
        if ((e & 3) == 2 || ((e & 7) == 4 && !(vmx_ept & 1)) || (e & rsvd)) return ~0UL;
        int leaf = lvl == 1 || ((lvl == 2 || lvl == 3) && (e & 0x80));
        if ((lvl == 4 && (e & 0x80)) || (lvl == 3 && leaf && !(vmx_ept >> 17 & 1))) return ~0UL;
        if (!leaf && (e & 0x78)) return ~0UL;
        u64 next = e & 0x000FFFFFFFFFF000UL;
        if (leaf) {
            u64 mt = (e >> 3) & 7;
            u64 size = lvl == 1 ? 1UL << 12 : lvl == 2 ? 1UL << 21 : 1UL << 30;
            if (mt == 2 || mt == 3 || mt == 7 || (next & (size - 1))) return ~0UL;
            return next | (gpa & (size - 1));
        }
        table = next;
    }
    return ~0UL;
}

static u64 nested_root(int v) { return vm_kind[v] == KIND_EPT ? vx_eptp[v] & 0x000FFFFFFFFFF000UL : V64(v, 0x0B0); }
static u64 guest_cr3(int v) { return vm_kind[v] == KIND_EPT ? vx_gcr3[v] : V64(v, 0x550); }
static u64 guest_cr4(int v) { return vm_kind[v] == KIND_EPT ? vx_gcr4[v] : V64(v, 0x548); }
static u64 nested_walk(int v, u64 gpa) {
    return vm_kind[v] == KIND_EPT ? ept_walk(vx_eptp[v], gpa) : npt_walk(V64(v, 0x0B0), gpa);
}

/* the guest root's slot 511, wherever its gpa maps now */
static void install_guest_slot(int v) {
    u64 h = nested_walk(v, (guest_cr3(v) & 0x000FFFFFFFFFF000UL) + 8 * 511);
    if (h != ~0UL && pa_ok(h)) {
        note_write(h);
        *PHYS(h) = (g_base + va2pa((guest_cr4(v) & CR4_LA57) ? h_gpml4 : h_gpdpt)) | 0x27;
    }
}

static void install_nested_slot(u64 root, u64 entry) {
    u64 pa = root + 8 * nslot;
    note_write(pa);
    *PHYS(pa) = entry;
}

/* ---- SVM ---- */
static void seg(int v, int off, u16 sel, u16 attr) {
    V16(v, off) = sel;
    V16(v, off + 2) = attr;
    V32(v, off + 4) = 0xFFFFFFFF;
    V64(v, off + 8) = 0;
}

static void set_cpl(int v, int cpl) {
    /* VMCB segment attributes: type, S, DPL, P, AVL, L, D/B, G (APM Vol. 2 15.5.1) */
    u16 code = cpl == 3 ? 0x02FB : 0x029B, data = cpl == 3 ? 0x00F3 : 0x0093;
    u16 cs = cpl == 3 ? 0x2B : 0x08, ds = cpl == 3 ? 0x23 : 0x10;
    seg(v, 0x410, cs, code);
    seg(v, 0x400, ds, data);
    seg(v, 0x420, ds, data);
    seg(v, 0x430, ds, data);
    V8(v, 0x4CB) = (u8)cpl;
}

/* guest CR4 bits that need a CPU feature: refused where the CPU lacks it, as the model does */
static int guest_cr4_ok(u64 gcr4) { return !(gcr4 & ~cr4_ok & (CR4_LA57 | 1UL << 20 | 1UL << 21 | 1UL << 22)); }

static const char *vm_boot(u64 v, u64 root, u64 gcr3, u64 gcr4, u64 gefer) {
    if (!svm_ok()) return "this CPU has no SVM with nested paging";
    if (!guest_cr4_ok(gcr4)) return "guest CR4 bits this CPU lacks";
    if (nslot < 1) return "MAXPHYADDR below 40: no room for the harness's nested slot";
    if (v >= MAX_VMS || !pa_ok(root) || (root & 0xFFF)) return "bad vm or nested root";
    virt_tables_init();
    for (int i = 0; i < 4096; i++) vmcb[v][i] = 0;
    V32(v, 0x008) = 0xFFFFFFFF;                          /* every exception */
    V32(v, 0x00C) = 1U << 21 | 1U << 24 | 1U << 31;     /* INTn, HLT, shutdown */
    V32(v, 0x010) = 1U << 0 | 1U << 1;                   /* VMRUN (required), VMMCALL */
    V32(v, 0x058) = (u32)v + 1;                          /* ASID */
    V8(v, 0x05C) = 1;                                    /* TLB_CONTROL: flush on first run */
    V64(v, 0x090) = 1;                                   /* NP_ENABLE */
    V64(v, 0x0B0) = root;                                /* nCR3 */
    set_cpl((int)v, 0);
    seg((int)v, 0x490, 0, 0x008B);                       /* TR: a busy 64-bit TSS */
    V32((int)v, 0x494) = 0x67;
    V64(v, 0x4D0) = gefer | (1UL << 10) | EFER_SVME;     /* LMA; SVME must be set in the guest */
    V64(v, 0x548) = gcr4;
    V64(v, 0x550) = gcr3;
    V64(v, 0x558) = 0x80010001;                          /* guest CR0 = PG|WP|PE */
    V64(v, 0x560) = 0x400;
    V64(v, 0x568) = 0xFFFF0FF0;
    V64(v, 0x570) = 2;
    V64(v, 0x668) = 0x0007040600070406UL;                /* guest PAT: the reset value */
    install_nested_slot(root, va2pa(h_npdpt) | 0x27);    /* the harness's nested slot */
    vm_kind[v] = KIND_NPT;
    vm_booted[v] = 1;
    vm_flush[v] = 0;
    cur_vm = (int)v;
    return 0;
}

static void vm_run(u64 rip, u64 rdi, int cpl) {
    int v = cur_vm;
    install_guest_slot(v);
    if (!(rdmsr(0xC0000080) & EFER_SVME)) guarded(op_efer, rdmsr(0xC0000080) | EFER_SVME, 0, 0);
    __asm__ volatile("wrmsr" : : "c"(0xC0010117), "a"((u32)va2pa(hsave)), "d"((u32)(va2pa(hsave) >> 32)));
    set_cpl(v, cpl);
    V64(v, 0x578) = rip;
    V64(v, 0x5D8) = 0;
    V64(v, 0x5F8) = 0;
    V64(v, 0x570) = 2;
    V32(v, 0x0C0) = 0;                                   /* VMCB clean bits: nothing cached */
    if (vm_flush[v]) { V8(v, 0x05C) = 1; vm_flush[v] = 0; }
    svm_run(va2pa(vmcb[v]), rdi);
    V8(v, 0x05C) = 0;
    puts("n "); puthex(V64(v, 0x070));
    putc(' '); puthex(V64(v, 0x078));
    putc(' '); puthex(V64(v, 0x080));
    putc(' '); puthex(V64(v, 0x5F8));
    putc('\n');
}

/* ---- VMX ---- */
static inline void vmw(u64 field, u64 value) {
    __asm__ volatile("vmwrite %0, %1" : : "r"(value), "r"(field) : "cc", "memory");
}
static inline u64 vmr(u64 field) {
    u64 v = 0;
    __asm__ volatile("vmread %1, %0" : "=r"(v) : "r"(field) : "cc");
    return v;
}
/* a control field: the bits wanted, within what the capability MSR allows (SDM A.3-A.5):
 * bits 31:0 of the MSR must be 1, bits 63:32 may be 1 */
static u64 ctl(u64 msr, u64 want) { return (want | (u32)msr) & (msr >> 32); }

static int vmx_enable(void) {
    if (vmx_on) return 1;
    u64 fc = rdmsr(0x3A);                                /* IA32_FEATURE_CONTROL */
    if (!(fc & 1)) {
        fc |= 1 | 4;                                     /* lock, VMXON outside SMX */
        __asm__ volatile("wrmsr" : : "c"(0x3A), "a"((u32)fc), "d"((u32)(fc >> 32)));
    }
    if (!(fc & 4)) return 0;
    __asm__ volatile("mov %0, %%cr0" : : "r"((rdcr0() | vmx_cr0f0 | CR0_NE) & (vmx_cr0f1 | 0xFFFFFFFF00000000UL)));
    wrcr4(rdcr4() | CR4_VMXE);
    *(volatile u32 *)vmxon_region = (u32)vmx_basic & 0x7FFFFFFF;
    guarded(op_vmxon, va2pa(vmxon_region), 0, 0);        /* returns RFLAGS: CF or ZF = failure */
    if (g_fault_vec != (u64)-1 || (g_fault_rax & 0x41)) return 0;
    vmx_on = 1;
    return 1;
}

/* leave VMX operation (a reset or boot() turns paging off, which VMX operation forbids) */
static void vmx_disable(void) {
    if (!vmx_on) return;
    __asm__ volatile("vmxoff" : : : "cc", "memory");
    wrcr4(rdcr4() & ~CR4_VMXE);
    vmx_on = 0;
}

static u64 gdt_base(void) { return (u64)gdt + KBASE; }

/* Load VMCS v afresh (VMCLEAR, VMPTRLD: the launch state is clear) with every field a run
 * needs: a 64-bit guest at cpl with the program's CR3/CR4/EFER and EPT; host state = now. */
static void vmcs_setup(int v, u64 rip, int cpl) {
    u64 pa = va2pa(vmcs[v]);
    *(volatile u32 *)vmcs[v] = (u32)vmx_basic & 0x7FFFFFFF;
    __asm__ volatile("vmclear %0" : : "m"(pa) : "cc", "memory");
    __asm__ volatile("vmptrld %0" : : "m"(pa) : "cc", "memory");
    vmw(0x4000, ctl(vmx_pin, 0));                                    /* pin-based */
    vmw(0x4002, ctl(vmx_proc, 1UL << 31 | 1UL << 7));                /* secondary controls, HLT exiting */
    vmw(0x401E, ctl(vmx_proc2, 1UL << 1));                           /* enable EPT (no VPID) */
    vmw(0x400C, ctl(vmx_exit, 1UL << 9 | 1UL << 21));                /* host address-space size, load EFER */
    vmw(0x4012, ctl(vmx_entry, 1UL << 9 | 1UL << 15));               /* IA-32e mode guest, load EFER */
    vmw(0x4004, 0xFFFFFFFF);                                         /* exception bitmap: every vector */
    vmw(0x4006, 0); vmw(0x4008, 0);                                  /* every #PF exits */
    vmw(0x400A, 0); vmw(0x400E, 0); vmw(0x4010, 0); vmw(0x4014, 0); vmw(0x4016, 0);
    vmw(0x6000, 0); vmw(0x6002, 0); vmw(0x6004, 0); vmw(0x6006, 0);
    vmw(0x201A, vx_eptp[v]);
    vmw(0x2800, ~0UL);                                               /* VMCS link pointer */
    /* host state */
    vmw(0x6C00, rdcr0()); vmw(0x6C02, rdcr3()); vmw(0x6C04, rdcr4());
    vmw(0x0C00, 0x10); vmw(0x0C02, 0x08); vmw(0x0C04, 0x10); vmw(0x0C06, 0x10);
    vmw(0x0C08, 0); vmw(0x0C0A, 0); vmw(0x0C0C, 0x30);
    vmw(0x6C06, 0); vmw(0x6C08, 0); vmw(0x6C0A, (u64)&tss); vmw(0x6C0C, gdt_base()); vmw(0x6C0E, (u64)idt);
    vmw(0x4C00, 0); vmw(0x6C10, 0); vmw(0x6C12, 0);
    vmw(0x2C02, rdmsr(0xC0000080));
    vmw(0x6C16, (u64)vmx_exit_stub);
    /* guest state (SDM 26.4.1): CR0 = PG|WP|PE and the bits VMX fixes to 1 (NE) */
    vmw(0x6800, (0x80010001UL | vmx_cr0f0) & vmx_cr0f1);
    vmw(0x6802, vx_gcr3[v]);
    vmw(0x6804, (vx_gcr4[v] | vmx_cr4f0) & vmx_cr4f1);
    vmw(0x6000, 0); vmw(0x6002, 0);                                  /* CR0/CR4 guest/host masks */
    vmw(0x2806, vx_gefer[v] | (1UL << 10));                          /* guest IA32_EFER: LMA */
    vmw(0x681A, 0x400); vmw(0x2802, 0);                              /* DR7, IA32_DEBUGCTL */
    vmw(0x681C, 0); vmw(0x681E, rip); vmw(0x6820, 2);                /* RSP, RIP, RFLAGS */
    vmw(0x6822, 0); vmw(0x4824, 0); vmw(0x4826, 0);
    vmw(0x482A, 0); vmw(0x6824, 0); vmw(0x6826, 0);                  /* SYSENTER */
    u64 code = cpl == 3 ? 0xA0FB : 0xA09B, data = cpl == 3 ? 0xC0F3 : 0xC093;
    u64 cs = cpl == 3 ? 0x2B : 0x08, ds = cpl == 3 ? 0x23 : 0x10;
    for (u64 i = 0; i < 6; i++) {                                    /* ES CS SS DS FS GS */
        vmw(0x0800 + 2 * i, i == 1 ? cs : ds);
        vmw(0x4800 + 2 * i, 0xFFFFFFFF);
        vmw(0x4814 + 2 * i, i == 1 ? code : data);
        vmw(0x6806 + 2 * i, 0);
    }
    vmw(0x080C, 0); vmw(0x480C, 0); vmw(0x4820, 0x10000); vmw(0x6812, 0);   /* LDTR unusable */
    vmw(0x080E, 0x30); vmw(0x480E, 0x67); vmw(0x4822, 0x8B); vmw(0x6814, (u64)&tss);   /* TR: busy TSS */
    vmw(0x4810, 0); vmw(0x6816, 0); vmw(0x4812, 0); vmw(0x6818, 0);  /* GDTR, IDTR: never used */
}

static const char *vmx_boot(u64 v, u64 eptp, u64 gcr3, u64 gcr4, u64 gefer) {
    if (!vmx_ok()) return "this CPU has no VMX with EPT";
    if (!guest_cr4_ok(gcr4)) return "guest CR4 bits this CPU lacks";
    if (nslot < 1) return "MAXPHYADDR below 40: no room for the harness's nested slot";
    u64 root = eptp & 0x000FFFFFFFFFF000UL;
    if (v >= MAX_VMS || !pa_ok(root)) return "bad vm or EPT root";
    if (!vmx_enable()) return "VMXON failed";
    virt_tables_init();
    u64 saved = *PHYS(root + 8 * nslot);
    install_nested_slot(root, va2pa(h_eptpdpt) | 0x107);
    vm_kind[v] = KIND_EPT;
    vx_eptp[v] = eptp; vx_gcr3[v] = gcr3; vx_gcr4[v] = gcr4; vx_gefer[v] = gefer;
    /* The EPTP is the CPU's to judge: a VM entry whose guest state is invalid on purpose
     * (RFLAGS bit 1 clear) checks the controls first (SDM 27.2.1.1: VMfailValid, error 7),
     * then fails on the guest state (exit reason 33) without running the guest. */
    vmcs_setup((int)v, (u64)gkv_read, 0);
    vmw(0x6820, 0);
    u64 fl = vmx_run(0);
    if (fl) {
        *PHYS(root + 8 * nslot) = saved;
        vm_booted[v] = 0;
        if (cur_vm == (int)v) cur_vm = -1;
        return (fl & 0x40) && vmr(0x4400) == 7 ? "VM entry refused the controls (EPTP)" : "VM entry failed";
    }
    vm_booted[v] = 1;
    cur_vm = (int)v;
    return 0;
}

static void vmx_access(u64 rip, u64 rdi, int cpl) {
    int v = cur_vm;
    if (!vmx_enable()) { reply_e("VMXON failed"); return; }
    install_guest_slot(v);
    vmcs_setup(v, rip, cpl);
    g_vmx_rax = 0;
    u64 fl = vmx_run(rdi);
    if (fl) { puts("e VM entry failed, error "); puthex(fl & 0x40 ? vmr(0x4400) : 0); putc('\n'); return; }
    /* m REASON QUALIFICATION GPA GLA INTERRUPTION-INFO ERROR-CODE RAX (SDM 28.2) */
    u64 reason = vmr(0x4402), qual = vmr(0x6400);
#ifdef MEMSPEC_BROKEN_EPT_QUAL  /* a deliberately wrong kernel: an EPT violation's read and write bits swapped */
    if (reason == 48) qual ^= 3;
#endif
    puts("m "); puthex(reason);
    putc(' '); puthex(qual);
    putc(' '); puthex(vmr(0x2400));
    putc(' '); puthex(vmr(0x640A));
    putc(' '); puthex(vmr(0x4404));
    putc(' '); puthex(vmr(0x4406));
    putc(' '); puthex(g_vmx_rax);
    putc('\n');
}

static const char *vmx_invept(u64 type, u64 root) {
    if (!vmx_enable()) return "VMXON failed";
    u64 desc[2] = {root | 0x1E, 0};                      /* an EPTP for the root: WB, 4 levels */
    for (int v = 0; v < MAX_VMS; v++)
        if (vm_booted[v] && vm_kind[v] == KIND_EPT && (vx_eptp[v] & 0x000FFFFFFFFFF000UL) == root) desc[0] = vx_eptp[v];
    u64 fl;
    __asm__ volatile("invept %1, %2; pushfq; popq %0" : "=r"(fl) : "m"(desc), "r"(type) : "cc", "memory");
    return fl & 0x41 ? "INVEPT failed" : 0;
}

static void virt_command(char cmd, u64 *a, int n) {
    const char *why = 0;
    switch (cmd) {
    case 'G':                                            /* vm_boot(vm, VM_NPT, root, 0, gcr3, gcr4, gefer) */
        if (n != 5) break;
        why = vm_boot(a[0], a[1], a[2], a[3], a[4]);
        if (why) reply_e(why); else reply_k();
        return;
    case 'V':                                            /* vm_boot(vm, VM_EPT, eptp, gcr3, gcr4, gefer) */
        if (n != 5) break;
        why = vmx_boot(a[0], a[1], a[2], a[3], a[4]);
        if (why) reply_e(why); else reply_k();
        return;
    case 'J':
        if (n != 1) break;
        if (a[0] >= MAX_VMS || !vm_booted[a[0]]) { reply_e("vm never booted"); return; }
        cur_vm = (int)a[0];
        reply_k();
        return;
    case 'U':                                            /* a nested (NPT or EPT) entry: hpa, value */
        if (n != 2) break;
        if (!pa_ok(a[0])) { reply_e("address outside the program's memory"); return; }
        for (int v = 0; v < MAX_VMS; v++)
            if (vm_booted[v] && a[0] == nested_root(v) + 8 * nslot) { reply_e("the harness's nested slot"); return; }
        note_write(a[0]);
        *PHYS(a[0]) = a[1];
        reply_k();
        return;
    case 'g': case 'h': {                               /* guest entries by gpa */
        if (n != (cmd == 'g' ? 2 : 1)) break;
        if (cur_vm < 0) { reply_e("no current vm"); return; }
        if ((a[0] & ~0xFFFUL) == (guest_cr3(cur_vm) & 0x000FFFFFFFFFF000UL) && ((a[0] >> 3) & 0x1FF) == 511) {
            reply_e("the harness's guest slot"); return;
        }
        u64 h = nested_walk(cur_vm, a[0]);
        if (h == ~0UL || !pa_ok(h)) { reply_e("gpa not mapped to the program's memory"); return; }
        if (cmd == 'g') { note_write(h); *PHYS(h) = a[1]; reply_k(); }
        else { puts("v "); puthex(*PHYS(h)); putc('\n'); }
        return;
    }
    case 'C':                                            /* the guest's CR3 (its root's gpa) */
        if (n != 1) break;
        if (cur_vm < 0) { reply_e("no current vm"); return; }
        /* written into the VMCB/VMCS rather than executed by the guest: a guest MOV to CR3 would
         * need the guest's code reachable through the old root first.  The virt layer takes
         * every VM entry to drop linear translations, so the next access sees the same. */
        if (vm_kind[cur_vm] == KIND_EPT) vx_gcr3[cur_vm] = a[0]; else V64(cur_vm, 0x550) = a[0];
        reply_k();
        return;
    case 'Y':                                            /* guest access: gva, op, cpl */
        if (n != 3) break;
        if (cur_vm < 0) { reply_e("no current vm"); return; }
        if (vm_kind[cur_vm] == KIND_EPT) {
            if (a[1] == 2) vmx_access(a[0], 0, (int)a[2]);
            else if (a[2] == 3) vmx_access((u64)(a[1] == 1 ? guv_write : guv_read), a[0], 3);
            else vmx_access((u64)(a[1] == 1 ? gkv_write : gkv_read), a[0], 0);
            return;
        }
        if (a[1] == 2) vm_run(a[0], 0, (int)a[2]);
        else if (a[2] == 3) vm_run((u64)(a[1] == 1 ? gu_write : gu_read), a[0], 3);
        else vm_run((u64)(a[1] == 1 ? gk_write : gk_read), a[0], 0);
        return;
    case 'T':                                            /* invept(kind, root) */
        if (n != 2) break;
        if (vmx_ok() && !svm_ok()) {                     /* Intel: INVEPT itself */
            why = vmx_invept(a[0], a[1]);
            if (why) reply_e(why); else reply_k();
            return;
        }
        /* AMD: TLB_CONTROL on the next VMRUN */
        for (int v = 0; v < MAX_VMS; v++)
            if (vm_booted[v] && (a[0] == 2 || V64(v, 0x0B0) == a[1])) vm_flush[v] = 1;
        reply_k();
        return;
    }
    reply_e("bad command");
}

/* ---- the shared-memory device ---- */
static u64 h_pd2[512] __attribute__((aligned(4096)));

static u32 pci_read(u32 dev, u32 off) {
    __asm__ volatile("outl %0, %1" : : "a"(0x80000000U | dev << 11 | off), "Nd"((u16)0xCF8));
    u32 v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"((u16)0xCFC));
    return v;
}

static void shm_init(void) {
    for (u32 dev = 0; dev < 32; dev++) {
        if (pci_read(dev, 0) != (0x1110U << 16 | 0x1AF4U)) continue;     /* ivshmem */
        u32 lo = pci_read(dev, 0x18), hi = pci_read(dev, 0x1C);
        u64 bar = (lo & ~0xFUL) | (((lo >> 1) & 3) == 2 ? (u64)hi << 32 : 0);
        if (!bar || bar >= (1UL << maxphy)) return;
        /* map the GiB holding the BAR at top-level slot 511, PDPT index 510, uncached */
        u64 base = bar & ~((1UL << 30) - 1);
        for (u64 i = 0; i < 512; i++) h_pd2[i] = (base + (i << 21)) | 0x9B;
        PHYS(0x5000)[510] = ((u64)h_pd2 - KBASE) | 3;
        shm = (volatile u8 *)(0xFFFFFFFF80000000UL + (bar - base));
        return;
    }
}

static void command(void);
static int read_line(void);

static void shm_batch(void) {
    if (!shm) { reply_e("no shared memory"); return; }
    shm_in_pos = shm_out_pos = 0;
    *(volatile u64 *)(shm + 24) = 0;
    shm_active = 1;
    for (;;) {
        int n = read_line();
        if (n < 0) break;
        if (n > 0) command();
    }
    shm_active = 0;
    puts("@ "); puthex(shm_out_pos); putc('\n');
}

/* ---- the command loop ---- */
static char line[512];

static int read_line(void) {
    int n = 0, c;
    for (;;) {
        c = getc();
        if (c < 0) return n ? n : -1;
        if (c == '\n') break;
        if (c == '\r') continue;
        if (n < (int)sizeof line - 1) line[n++] = (char)c;
    }
    line[n] = 0;
    return n;
}

static int parse_args(const char *s, u64 *a, int max) {
    int n = 0;
    while (*s && n < max) {
        while (*s == ' ') s++;
        if (!*s) break;
        u64 v = 0;
        int digits = 0;
        for (; *s && *s != ' '; s++, digits++) {
            char c = *s;
            v <<= 4;
            if (c >= '0' && c <= '9') v |= (u64)(c - '0');
            else if (c >= 'a' && c <= 'f') v |= (u64)(c - 'a' + 10);
            else return -1;
        }
        if (!digits) break;
        a[n++] = v;
    }
    return n;
}

static void features_reply(void) {
    u32 r[4];
    char vendor[13];
    cpuid(0, 0, r);
    *(u32 *)&vendor[0] = r[1]; *(u32 *)&vendor[4] = r[3]; *(u32 *)&vendor[8] = r[2];
    vendor[12] = 0;
    puts("F "); puts(vendor);
    u64 v[] = {fmax, fxmax, f1c, f1d, f7b, f7c, f7d, f81c, f81d, f88a, f8ad, ram_end};
    for (unsigned i = 0; i < sizeof v / sizeof v[0]; i++) { putc(' '); puthex(v[i]); }
    putc('\n');
}

/* the access itself, at CPL 0 or 3 (the answer is in g_fault_*) */
static void run_access(u64 addr, u64 op, u64 cpl, u64 ac) {
    if (cpl == 3) {
        u64 rflags = 0x2 | (ac ? 0x40000 : 0);
        /* a fetch from a non-canonical address is a CPL 3 jump there: its #GP(0) is raised by
         * the jump at CPL 3, as for a program's own branch (IRETQ itself would refuse the RIP) */
        if (op == 2 && !canonical(addr)) guarded(op_user, (u64)user_fetch, addr, rflags);
        else if (op == 2) guarded(op_user, addr, 0, rflags);
        else guarded(op_user, (u64)(op == 1 ? user_write : user_read), addr, rflags);
    } else {
        guarded(op == 0 ? op_read : op == 1 ? op_write : op_fetch, addr, ac, 0);
    }
}

static void access(u64 addr, u64 op, u64 cpl, u64 ac) {
#ifdef MEMSPEC_BROKEN_RING3     /* a deliberately wrong kernel: "user" accesses made at CPL 0 */
    cpl = 0;
#endif
    if (harness_slot(addr)) { reply_e("address in the harness's slot"); return; }
    if (harms_harness(addr, op, cpl, ac)) { reply_r("the access would reach the harness's own memory"); return; }
    /* an entry beyond the end of RAM is whatever the machine returns for absent memory (QEMU 0,
     * Bochs all ones), not the pattern the model reads there: not judged */
    if (walk_leaves_ram) { reply_r("the walk reads a paging entry beyond the end of RAM"); return; }
    run_access(addr, op, cpl, ac);
    /* a store at an unaligned address changes a pattern byte the log cannot name */
    if (op == 1 && (addr & 7) && (g_fault_vec == (u64)-1 || g_fault_vec == 0x81))
        full_refill = 1;
    reply_x(op == 2 ? FETCH_OP : DATA_OP);
}

/* ---- sweeps: one access through its own tree (README.md, Sweeps) ----
 * sweep_run(a, n): a = root cr0 cr4 efer pkru la tla how e_top .. e_leaf.  Load the control
 * state (CR0 may differ in WP only, CR4 in SMEP/SMAP/PKE/PGE only, EFER in NXE only), write the
 * tree's entries from root along the indexes of tla (down to a not-present entry or a leaf),
 * make the walk fresh, access la (how: op | cpl << 4 | ac << 8), read the A and D flags of the
 * entries back and put the pattern back where the tree was.  The `z` command makes a from
 * combination indexes itself (sweep_args) and answers binary records. */
#define EFER_NXE (1UL << 11)
#define SWEEP_CR4 (1UL << 7 | 1UL << 20 | 1UL << 21 | 1UL << 22)
#define SW_OK 0
#define SW_EXC 1
#define SW_REFUSED 2
#define SW_ERROR 3
struct sweep_out { u8 kind, vector; u16 ad; u32 errcode; u64 value; };   /* the `z` record, 16 bytes */
static u64 sweep_last;
static const char *sweep_why;
static int sweep_run(u64 *a, int n, struct sweep_out *o) {
    u64 root = a[0] & 0x000FFFFFFFFFF000UL, cr0 = a[1], cr4 = a[2], efer = a[3], pkru = a[4], la = a[5];
    u64 tla = a[6], op = a[7] & 0xF, cpl = (a[7] >> 4) & 0xF, ac = (a[7] >> 8) & 1;
    int levels = n - 8;
    o->kind = SW_ERROR; o->vector = 0xff; o->ad = 0; o->errcode = 0; o->value = 0;
#ifdef MEMSPEC_BROKEN_RING3
    cpl = 0;
#endif
    if (levels != top_level()) { sweep_why = "the tree's depth is not the paging mode's"; return SW_ERROR; }
    if (op > 2 || (cpl != 0 && cpl != 3) || (la & 7)) { sweep_why = "bad access"; return SW_ERROR; }
    if (((cr0 ^ rdcr0()) & (CR0_PG | CR0_PE)) || ((cr4 ^ rdcr4()) & (CR4_PAE | CR4_LA57 | CR4_PCIDE)) ||
        (cr4 & SWEEP_CR4 & ~cr4_ok) || (efer & EFER_NXE & ~efer_ok) || !(efer & EFER_LME)) {
        sweep_why = "control state not loadable by a sweep"; return SW_ERROR;
    }
    /* of the host's values, only the bits a sweep varies are taken */
    cr0 = (rdcr0() & ~(1UL << 16)) | (cr0 & (1UL << 16));
    cr4 = (rdcr4() & ~SWEEP_CR4) | (cr4 & SWEEP_CR4);
    efer = (rdmsr(0xC0000080) & ~EFER_NXE) | (efer & EFER_NXE);
    u64 where[5];
    int nw = 0;
    u64 table = root;
    for (int k = 0; k < levels; k++) {
        int lvl = levels - k;
        u64 idx = (tla >> (12 + 9 * (lvl - 1))) & 0x1FF;
        u64 e = a[8 + k];
        if (!pa_ok(table) || (lvl == levels && idx == HARNESS_SLOT)) break;
        where[nw++] = table + 8 * idx;
        if (!(e & 1) || lvl == 1 || ((lvl == 2 || lvl == 3) && (e & 0x80))) break;
        /* the next table's address is bits M-1:12 (bits 51:M are reserved, not address) */
        table = e & ((1UL << maxphy) - 1) & ~0xFFFUL;
    }
    if (nw == 0 || !(nw == levels || !(a[8 + nw - 1] & 1) || (a[8 + nw - 1] & 0x80))) {
        sweep_why = "tree outside the program's memory"; return SW_ERROR;
    }
    if (*PHYS(root + 8 * HARNESS_SLOT) != (levels == 5 ? HARNESS_ENTRY5 : HARNESS_ENTRY4)) install_slot(root);
    /* NXE first (the harness's entries have XD clear), then WP, then CR4, then PKRU (needs PKE) */
    u64 cur = rdmsr(0xC0000080);
    if (cur != efer) __asm__ volatile("wrmsr" : : "c"(0xC0000080), "a"((u32)efer), "d"((u32)(efer >> 32)));
    if (rdcr0() != cr0) __asm__ volatile("mov %0, %%cr0" : : "r"(cr0) : "memory");
    if (rdcr4() != cr4) wrcr4(cr4);
    if (cr4 & (1UL << 22)) {
        u32 now;
        __asm__ volatile("xor %%ecx, %%ecx; rdpkru" : "=a"(now) : : "rcx", "rdx");
        if (now != (u32)pkru) __asm__ volatile("wrpkru" : : "a"((u32)pkru), "c"(0), "d"(0) : "memory");
    }
    for (int k = 0; k < nw; k++) *PHYS(where[k]) = a[8 + k];
    /* a fresh walk: INVLPG of this tree's address and of the last one's invalidates their TLB
     * entries (whatever the page size) and every paging-structure-cache entry (SDM Vol. 3A
     * 4.10.4.1); the root changes by MOV CR3 only when it differs (a full flush) */
    if ((rdcr3() & 0x000FFFFFFFFFF000UL) != root) wrcr3(root);
    else {
        __asm__ volatile("invlpg (%0)" : : "r"(tla) : "memory");
        if (sweep_last != tla) __asm__ volatile("invlpg (%0)" : : "r"(sweep_last) : "memory");
    }
    sweep_last = tla;
    int refused = harms_harness(la, op, cpl, ac);
    if (!refused) run_access(la, op, cpl, ac);
    u64 ad = 0;
    for (int k = 0; k < nw; k++) {
        int lvl = levels - k;
        ad |= ((*PHYS(where[k]) >> 5) & 3) << (2 * (lvl - 1));
        *PHYS(where[k]) = pattern(where[k]);
    }
    o->ad = (u16)ad;
    if (refused) { sweep_why = "the access would reach the harness's own memory"; o->kind = SW_REFUSED; return SW_REFUSED; }
    u64 v = g_fault_vec;
#ifdef MEMSPEC_BROKEN_ERRCODE
    if (v == 14) g_fault_err ^= 2;
#endif
    int ok = (op != 2 && (v == (u64)-1 || v == 0x81)) || (op == 2 && v == 3);
    o->kind = ok ? SW_OK : SW_EXC;
    o->vector = ok ? 0xff : (u8)v;
    o->errcode = ok ? 0 : (u32)g_fault_err;
    /* an allowed load or store: the qword read; a #PF: CR2 */
    o->value = ok ? (op != 2 ? g_fault_rax : 0) : (v == 14 ? g_fault_cr2 : 0);
    return o->kind;
}

/* The combination index -> the sweep's arguments, as memspec/sweepspace.py's Space.decode and
 * build() make them for 4- and 5-level paging: the mixed-radix digits of DIMENSIONS (the last
 * dimension fastest), then the control registers, the address and the entries of the tree.  A
 * host test compares this decoding (the `y` command) with build() on random indexes. */
enum { D_VARIANT, D_LEAF, D_WP, D_SMEP, D_SMAP, D_NXE, D_PK, D_CPL, D_AC, D_ACCESS, D_DIR_P, D_DIR_RW,
       D_DIR_US, D_DIR_NX, D_LEAF_P, D_LEAF_RW, D_LEAF_US, D_LEAF_A, D_LEAF_D, D_LEAF_NX, D_N };
static const u8 sweep_radix[D_N] = {5, 3, 2, 2, 2, 2, 4, 2, 2, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
#define SWEEP_SIZE 11796480UL
#define SW_TABLE(k) (0x200000UL + 0x1000UL * (k))
#define SW_PKEY 1UL
static u64 sweep_la(int levels, int fetch) {
    u64 la = 0x8;
    for (int lv = 1; lv <= levels; lv++) {
        u64 idx = lv == levels ? 1 : lv == 1 ? (fetch ? 5 : 1) : (u64)lv;
        la |= idx << (12 + 9 * (lv - 1));
    }
    return la;
}
static int sweep_args(u64 index, int levels, u64 *a) {
    u8 d[D_N];
    if (index >= SWEEP_SIZE || (levels != 4 && levels != 5)) return 0;
    for (int k = D_N - 1; k >= 0; k--) { d[k] = (u8)(index % sweep_radix[k]); index /= sweep_radix[k]; }
    int fetch = d[D_ACCESS] == 2, kind = d[D_LEAF];
    a[0] = SW_TABLE(0);
    a[1] = 0x80000001UL | (u64)d[D_WP] << 16;
    a[2] = 0x20UL | (levels == 5 ? CR4_LA57 : 0) | (u64)d[D_SMEP] << 20 | (u64)d[D_SMAP] << 21 |
           (d[D_PK] ? 1UL << 22 : 0);
    a[3] = 0x500UL | (u64)d[D_NXE] << 11;
    a[4] = d[D_PK] == 2 ? 1UL << (2 * SW_PKEY) : d[D_PK] == 3 ? 2UL << (2 * SW_PKEY) : 0;
    u64 tla = sweep_la(levels, fetch);
    a[5] = tla | (d[D_VARIANT] == 4 ? 1UL << (levels == 5 ? 56 : 47) : 0);      /* noncanonical */
    a[6] = tla;
    a[7] = d[D_ACCESS] | (u64)(d[D_CPL] ? 3 : 0) << 4 | (u64)d[D_AC] << 8;
    u64 leaf = d[D_LEAF_P] | (u64)d[D_LEAF_RW] << 1 | (u64)d[D_LEAF_US] << 2 | (u64)d[D_LEAF_A] << 5 |
               (u64)d[D_LEAF_D] << 6 | (u64)d[D_LEAF_NX] << 63 | SW_PKEY << 59;
    leaf |= kind == 0 ? (fetch ? 0x310000UL : 0x300000UL) : kind == 1 ? 0x80 | 0xA00000UL : 0x80;
    if (d[D_VARIANT] == 1) leaf |= 1UL << 51;          /* leaf51 */
    if (d[D_VARIANT] == 3) leaf |= 1UL << 13;          /* leaf13 */
    u64 dir = d[D_DIR_P] | (u64)d[D_DIR_RW] << 1 | (u64)d[D_DIR_US] << 2 | (u64)d[D_DIR_NX] << 63 |
              (d[D_VARIANT] == 2 ? 1UL << 51 : 0);     /* dir51 */
    int leaf_level = kind + 1;
    for (int k = 0; k < levels; k++) {
        int level = levels - k;
        u64 next = k + 1 < levels ? SW_TABLE(k + 1) : 0;
        a[8 + k] = level == leaf_level ? leaf : level == leaf_level + 1 ? dir | next :
                   level > leaf_level ? 0x7 | next : 0;
    }
    return 8 + levels;
}

/* y levels index: the arguments sweep_args makes (for the host's test of the decoding) */
static void sweep_decode_reply(u64 *a, int n) {
    u64 s[13];
    int m = n == 2 ? sweep_args(a[1], (int)a[0], s) : 0;
    if (!m) { reply_e("bad combination"); return; }
    putc('v');
    for (int i = 0; i < m; i++) { putc(' '); puthex(s[i]); }
    putc('\n');
}

/* z levels start count: the combinations start .. start+count-1, each decoded, staged and run by
 * sweep_run; the answer is 'z' and then count 16-byte records (struct sweep_out, little-endian:
 * kind, vector, A/D, error code, the value read or CR2), in shared memory or on the serial line. */
static void putbytes(const u8 *p, int n) {
    if (shm_active && !capture && shm_out_pos + n <= SHM_SIZE - SHM_OUT) {
        for (int i = 0; i < n; i++) shm[SHM_OUT + shm_out_pos + i] = p[i];
        shm_out_pos += n;
        *(volatile u64 *)(shm + 24) = shm_out_pos;
        return;
    }
    for (int i = 0; i < n; i++) putc((char)p[i]);
}
static void sweep_batch(u64 *a, int n) {
    u64 s[13];
    if (n != 3 || (a[0] != 4 && a[0] != 5) || a[1] >= SWEEP_SIZE || a[2] > SWEEP_SIZE - a[1]) {
        reply_e("bad sweep range"); return;
    }
    if ((int)a[0] != top_level()) { reply_e("the tree's depth is not the paging mode's"); return; }
    putc('z');
    for (u64 i = a[1]; i < a[1] + a[2]; i++) {
        struct sweep_out o;
        int m = sweep_args(i, (int)a[0], s);
        sweep_run(s, m, &o);
        putbytes((const u8 *)&o, sizeof o);
    }
}

/* ---- the segmentation unit (the seg calls; README.md, Segmentation) ----
 * A program's descriptors live in a GDT of their own, laid out as memspec's segmentation unit
 * (memspec/calls_hw.py): program descriptors 1..23, the harness's flat ones at 24..28, 29..31
 * zero (29 is a scratch slot, written only inside a probe).  Probes run in 64-bit mode with
 * that GDT loaded, an IDT whose gates use its 64-bit code descriptor (0xD0) and a root that
 * maps physical memory one to one (2 MiB pages up to the end of RAM, the harness's slot 511).
 * A segment register's hidden part is what the program's last successful load (or WRMSR of
 * FS/GS_BASE) left: the kernel keeps it (the descriptor as loaded, the selector, the base read
 * back from the MSR) and reloads the register from it, through the scratch slot, in the same
 * probe as the access, so a descriptor rewritten since is not seen (SDM Vol. 3A 3.4.3). */
#define SEG_ENTRIES 32
#define SEG_PROGRAM 24
#define SEG_SCRATCH 29
#define SEG_KCODE (26 << 3)
#define SEG_FULL_LIMIT (8 * SEG_ENTRIES - 1)
#define SEG_LONG 3
extern u64 seg_load_table[6], seg_acc_table[48], seg_user_load_table[6];
extern char seg_op_ring[];
extern volatile u64 g_fault_rsp, seg_ring_rsp;
static u8 seg_ring_stack[4096] __attribute__((aligned(16)));
extern volatile u64 seg_stage;
extern void seg_env_enter(void *gdtr, void *idtr), seg_env_exit(void *gdtr, void *idtr);
static const u64 seg_harness[5] = {
    0x00CF9B000000FFFFUL, 0x00CF93000000FFFFUL, 0x00AF9B000000FFFFUL, 0x00CFFB000000FFFFUL, 0x00CFF3000000FFFFUL,
};
static u64 seg_gdt[SEG_ENTRIES] __attribute__((aligned(16)));
static u64 seg_idt[512] __attribute__((aligned(4096)));
static u64 seg_pml4[512] __attribute__((aligned(4096)));
static u64 seg_pdpt[512] __attribute__((aligned(4096)));
static u64 seg_pd[512] __attribute__((aligned(4096)));
static struct { u16 limit; u64 base; } __attribute__((packed)) seg_gdtr, seg_idtr, k_gdtr;
static struct { u64 sel, desc, base; } seg_reg[6];
static u64 seg_limit, seg_base_now[2];
#define SEG_RING_CODE 30
#define SEG_RING_DATA 31
static int seg_paging;      /* a paging call ran since the reset: the memory is not the pattern any more */

static void seg_reset(void) {
    for (int i = 0; i < SEG_ENTRIES; i++) seg_gdt[i] = 0;
    for (int i = 0; i < 5; i++) seg_gdt[SEG_PROGRAM + i] = seg_harness[i];
    seg_limit = SEG_FULL_LIMIT;
    for (int s = 0; s < 6; s++) {     /* every data register flat (25 << 3), FS and GS bases 0 */
        seg_reg[s].sel = 25 << 3;
        seg_reg[s].desc = seg_harness[1];
        seg_reg[s].base = 0;
    }
}

static void seg_init(void) {
    for (int v = 0; v < 512; v++) seg_idt[v] = idt[v];
    for (int v = 0; v < 256; v++)
        seg_idt[2 * v] = (seg_idt[2 * v] & ~(0xFFFFUL << 16)) | ((u64)SEG_KCODE << 16);
    seg_idtr.limit = sizeof seg_idt - 1;
    seg_idtr.base = (u64)seg_idt;
    seg_gdtr.base = (u64)seg_gdt;
    extern char gdtr_high[];
    const volatile u16 *kg = (const volatile u16 *)((u64)gdtr_high + KBASE);
    k_gdtr.limit = kg[0];
    k_gdtr.base = *(const volatile u64 *)(kg + 1);
    seg_pml4[0] = va2pa(seg_pdpt) | 3;
    seg_pdpt[0] = va2pa(seg_pd) | 3;
    for (u64 i = 0; i < 512 && (i << 21) < ram_end; i++) seg_pd[i] = (i << 21) | 0x83;
    seg_pml4[HARNESS_SLOT] = HARNESS_ENTRY4;
    seg_reset();
}

/* run fn(a, b, c) guarded in the unit's environment, the GDT limit as given */
static void seg_guarded(void *fn, u64 a, u64 b, u64 c, u64 limit) {
    u64 cr3 = rdcr3();
    wrcr3(va2pa(seg_pml4));
    seg_gdtr.limit = SEG_FULL_LIMIT;
    seg_env_enter(&seg_gdtr, &seg_idtr);
    if (limit != SEG_FULL_LIMIT) {
        seg_gdtr.limit = limit;
        __asm__ volatile("lgdt %0" : : "m"(seg_gdtr) : "memory");
    }
    seg_stage = 0;
    guarded(fn, a, b, c);
    /* FS's and GS's bases before seg_env_exit loads null selectors into them */
    seg_base_now[0] = rdmsr(0xC0000100);
    seg_base_now[1] = rdmsr(0xC0000101);
    seg_env_exit(&k_gdtr, &idtr);
    wrcr3(cr3);
}

/* why the unit cannot run a probe now, or 0 */
static const char *seg_blocked(void) {
    if (seg_paging) return "the segmentation calls run only in programs without paging calls (they share one CPU and its memory here)";
    if (rdcr4() & CR4_LA57) return "the segmentation unit's root is a 4-level one";
    return 0;
}

static void seg_command(char cmd, u64 *a, int n) {
    const char *why;
    switch (cmd) {
    case 'D':                                           /* seg_mode(mode) */
        if (n != 1) break;
        if (a[0] != SEG_LONG) { reply_r("the test kernel runs the segmentation calls in 64-bit mode (SEG_LONG) only"); return; }
        seg_reset();
        reply_k();
        return;
    case 'd':                                           /* set_desc: index, raw descriptor */
        if (n != 2) break;
        if (a[0] < 1 || a[0] >= SEG_PROGRAM) { reply_e("descriptor index outside 1..23"); return; }
        seg_gdt[a[0]] = a[1];
        reply_k();
        return;
    case 'q':                                           /* read_desc(index) */
        if (n != 1) break;
        if (a[0] >= SEG_ENTRIES) { reply_e("descriptor index outside the GDT"); return; }
        puts("v "); puthex(seg_gdt[a[0]]); putc('\n');
        return;
    case 'l':                                           /* lgdt(limit) */
        if (n != 1) break;
        if (a[0] > SEG_FULL_LIMIT) { reply_e("GDT limit beyond the unit's GDT"); return; }
        seg_limit = a[0];
        reply_k();
        return;
    case 'L': {                                         /* load_seg(sreg, selector, cpl) */
        if (n != 3) break;
        u64 s = a[0], sel = a[1], cpl = a[2];
        if (s > 5 || sel > 0xFFFF || cpl > 3) { reply_e("bad load"); return; }
        if ((why = seg_blocked())) { reply_r(why); return; }
        if (seg_limit < SEG_KCODE + 7) {
            reply_r("a GDT limit below the harness's code descriptor (index 26) leaves no way to deliver an exception");
            return;
        }
        if (cpl == 0) {
            seg_guarded((void *)seg_load_table[s], sel, 0, 0, seg_limit);
        } else {
            /* at CPL 1..3: IRETQ to the user page's stub on a code and a data descriptor of that DPL
             * (slots 30 and 31, written for the probe only), back through INT 0x81 */
            if (seg_limit < SEG_FULL_LIMIT) {
                reply_r("a GDT limit below the descriptors of the ring the load runs at (indexes 30, 31)");
                return;
            }
            seg_gdt[SEG_RING_CODE] = 0x00AF9B000000FFFFUL | cpl << 45;
            seg_gdt[SEG_RING_DATA] = 0x00CF93000000FFFFUL | cpl << 45;
            seg_ring_rsp = (u64)seg_ring_stack + sizeof seg_ring_stack;
            seg_guarded(seg_op_ring, seg_user_load_table[s], sel, cpl, seg_limit);
            seg_gdt[SEG_RING_CODE] = seg_gdt[SEG_RING_DATA] = 0;
            /* from CPL 1..3 the CPU switches to the TSS's stack (SDM Vol. 3A 6.14.2); a frame on the
             * ring's own stack means it no longer ran at that CPL (QEMU 7.2 takes a null SS's DPL, 0,
             * as the CPL: cpu_x86_load_seg_cache): not an answer about the load */
            if (g_fault_rsp < (u64)isr_stack_top - 4096 || g_fault_rsp >= (u64)isr_stack_top) {
                reply_r("the way back from the ring arrived without a stack switch: the CPU no longer ran at that CPL");
                return;
            }
            if (g_fault_vec == 0x81) g_fault_vec = (u64)-1;     /* the stub's way back: the load completed */
        }
        if (g_fault_vec == (u64)-1) {
            /* the hidden part as loaded: the descriptor with the accessed flag the load set, and
             * FS's or GS's base as the CPU holds it (a null load may keep or clear it) */
            seg_reg[s].sel = sel;
            seg_reg[s].desc = (sel & ~3UL) ? seg_gdt[sel >> 3] : 0;
            if (s == 4 || s == 5) seg_reg[s].base = seg_base_now[s - 4];
        }
        reply_x(0);
        return;
    }
    case 'a': {                                         /* seg_access(sreg, offset, op, size) */
        if (n != 4) break;
        u64 s = a[0], off = a[1], op = a[2], size = a[3];
        int lg = size == 1 ? 0 : size == 2 ? 1 : size == 4 ? 2 : size == 8 ? 3 : -1;
        if (s > 5 || s == 1 || op > 1 || lg < 0) { reply_e("bad access"); return; }
        if ((why = seg_blocked())) { reply_r(why); return; }
        u64 sel = seg_reg[s].sel;
        /* SS loaded at CPL 1..3 (DPL = that CPL) is reloaded at CPL 0 from a copy of DPL 0, and a null
         * SS as selector 0: in 64-bit mode neither takes part in an access (SDM Vol. 3A 3.4.4, 5.4.1.1) */
        if (sel & ~3UL) {
            seg_gdt[SEG_SCRATCH] = s == 2 ? seg_reg[s].desc & ~(3UL << 45) : seg_reg[s].desc;
            sel = SEG_SCRATCH << 3;
        } else if (s == 2) {
            sel = 0;
        }
        u64 base = seg_reg[s].base;
#ifdef MEMSPEC_BROKEN_SEG       /* a deliberately wrong kernel: FS's and GS's bases are lost */
        base = 0;
#endif
        seg_guarded((void *)seg_acc_table[8 * s + 4 * op + lg], off, sel, base, SEG_FULL_LIMIT);
        seg_gdt[SEG_SCRATCH] = 0;
        if (g_fault_vec != (u64)-1 && !seg_stage) {
            reply_r("the test kernel could not reload the segment register as the program left it");
            return;
        }
        reply_x(DATA_OP);
        return;
    }
    case 'w': {                                         /* wrmsr_segbase(sreg, base): FS 4, GS 5 */
        if (n != 2) break;
        if (a[0] != 4 && a[0] != 5) { reply_e("WRMSR of FS_BASE or GS_BASE only"); return; }
        u32 msr = 0xC0000100 + (u32)(a[0] - 4);
        guarded(op_wrmsr, msr, a[1], 0);
        if (g_fault_vec == (u64)-1) seg_reg[a[0]].base = rdmsr(msr);
        reply_x(0);
        return;
    }
    }
    reply_e("bad command");
}

static int strchr_(const char *s, char c) {
    for (; *s; s++) if (*s == c) return 1;
    return 0;
}

static void command(void) {
    u64 a[6] = {0};
    char cmd = line[0];
    int n = parse_args(line + 1, a, 6);
    if (n < 0) { reply_e("bad number"); return; }
    /* every command but the reset, the segmentation unit's and the queries may change paging
     * state or memory: the segmentation calls are refused from then on (seg_blocked) */
    if (!strchr_("RDdqlLawSFMP@Xy", cmd)) seg_paging = 1;
    switch (cmd) {
    case 'D': case 'd': case 'q': case 'l': case 'L': case 'a': case 'w':
        seg_command(cmd, a, n);
        return;
    case 'z': sweep_batch(a, n); return;
    case 'y': sweep_decode_reply(a, n); return;
    case 'R': {   /* reset: memory back to the pattern, then boot(cr0, cr4, efer), CR3 = root */
        if (n != 4) break;
        /* off the program's root first: restoring it would pull the harness's slot from
         * under the running code once the TLB forgets (a VMRUN flushes QEMU's) */
        wrcr3((rdcr4() & CR4_LA57) ? H_BOOT5 : H_BOOT4);
        restore_memory();
        for (int v = 0; v < MAX_VMS; v++) vm_booted[v] = 0;
        cur_vm = -1;
        if (f7c & (1 << 3)) {       /* PKRU back to 0 (WRPKRU needs CR4.PKE) */
            wrcr4(rdcr4() | (1UL << 22));
            guarded(op_wrpkru, 0, 0, 0);
        }
        seg_reset();
        seg_paging = 0;
        const char *why = boot(a[0], a[1], a[2]);
        if (why) { reply_e(why); return; }
        if (!install_slot(a[3] & 0x000FFFFFFFFFF000UL)) { reply_e("root outside the program's memory"); return; }
        wrcr3(a[3]);
        reply_k();
        return;
    }
    case 'B': {
        if (n != 3) break;
        const char *why = boot(a[0], a[1], a[2]);
        if (why) reply_e(why); else reply_k();
        return;
    }
    case 'W':
        if (n != 2) break;
        if (!pa_ok(a[0])) { reply_e("address outside the program's memory"); return; }
        note_write(a[0]);
        *PHYS(a[0]) = a[1];
        reply_k();
        return;
    case 'Q':
        if (n != 1) break;
        if (!pa_ok(a[0])) { reply_e("address outside the program's memory"); return; }
        puts("v "); puthex(*PHYS(a[0])); putc('\n');
        return;
    case 'A':
        if (n != 4) break;
        access(a[0], a[1], a[2], a[3]);
        return;
    case '3':
        if (n != 1) break;
    {
        /* bits 63:MAXPHYADDR are reserved (bit 63 is the no-flush hint with CR4.PCIDE = 1):
         * such a value is the CPU's to refuse (#GP); any other root must be the program's */
        u64 rsvd = a[0] & ~((1UL << maxphy) - 1);
        if (rdcr4() & CR4_PCIDE) rsvd &= ~(1UL << 63);
        u64 root = a[0] & ((1UL << maxphy) - 1) & ~0xFFFUL;
        if (!rsvd && !install_slot(root)) { reply_e("root outside the program's memory"); return; }
        guarded(op_cr3, a[0], 0, 0); reply_x(0);
        return;
    }
    case '0': if (n != 1) break; guarded(op_cr0, a[0], 0, 0); reply_x(0); return;
    case '4': if (n != 1) break; guarded(op_cr4, a[0], 0, 0); reply_x(0); return;
    case 'E': if (n != 1) break; guarded(op_efer, a[0], 0, 0); reply_x(0); return;
    case 'I':
        if (n != 1) break;
        if (harness_slot(a[0])) { reply_e("address in the harness's slot"); return; }
        guarded(op_invlpg, a[0], 0, 0); reply_x(0); return;
    case 'N':
        if (n != 3) break;
        if (a[0] == 0 && harness_slot(a[2])) { reply_e("address in the harness's slot"); return; }
        guarded(op_invpcid, a[0], a[1], a[2]); reply_x(0); return;
    case 'K': if (n != 1) break; guarded(op_wrpkru, a[0], 0, 0); reply_x(0); return;
    case 'S':     /* state: CR0 CR3 CR4 EFER */
        puts("v "); puthex(rdcr0()); putc(' '); puthex(rdcr3()); putc(' ');
        puthex(rdcr4()); putc(' '); puthex(rdmsr(0xC0000080)); putc('\n');
        return;
    case 'F': features_reply(); return;
    case 'M': vmx_reply(); return;
    case 'G': case 'V': case 'J': case 'U': case 'g': case 'h': case 'C': case 'Y': case 'T':
        virt_command(cmd, a, n);
        return;
    case 'P': puts("k\n"); return;      /* ping */
    case '@': if (!shm_active) { shm_batch(); return; } break;
    case 'X':     /* the end: Bochs' shutdown port; QEMU is killed by its host */
        puts("bye\n");
        for (const char *s = "Shutdown"; *s; s++) outb(0x8900, (u8)*s);
        for (;;) __asm__ volatile("cli; hlt");
    }
    reply_e("bad command");
}

#ifdef MEMSPEC_BUILTIN
static void builtin_exit(int code);
#endif

void fatal_exception(u64 *frame) {
    shm_active = 0;
    capture = 0;
    puts("! harness exception vector "); puthex(frame[0]);
    puts(" error "); puthex(frame[1]);
    puts(" rip "); puthex(frame[2]);
    puts(" cr2 "); puthex(g_fault_cr2);
    putc('\n');
#ifdef MEMSPEC_BUILTIN
    puts("VERDICT: CRASH (the harness took an exception outside a probe)\n");
    builtin_exit(2);
#endif
    for (;;) __asm__ volatile("cli; hlt");
}

/* ---- the built-in program (memspec repro: -DMEMSPEC_BUILTIN with a generated builtin.h) ----
 * Each call is a command line of the serial protocol; its answer is captured and compared with
 * the answers the model allows, each a kind letter and hex fields compared under a mask (0: any
 * value, e.g. the RIP of an exception).  At the first answer that is none of them the kernel
 * prints the call, the clause, expected and observed; the last line is the verdict.  The end:
 * QEMU's isa-debug-exit at port 0xf4 (exit status 1 CONFORMS, 3 DIVERGES, 5 CRASH), then
 * Bochs' shutdown port. */
#ifdef MEMSPEC_BUILTIN
static void builtin_exit(int code) {
    /* the UART's transmitter empty (LSR.TEMT) first: Bochs stops at once on its shutdown port */
    for (long spin = 0; spin < 100000000L && !(inb(COM1 + 5) & 0x40); spin++) {}
    outb(0xf4, (u8)code);
    for (const char *s = "Shutdown"; *s; s++) outb(0x8900, (u8)*s);
    for (;;) __asm__ volatile("cli; hlt");
}

struct bi_pat { char kind; int nf; u64 v[7], m[7]; };
struct bi_call {
    const char *line, *text, *clause, *citation, *expected;
    const char *before;     /* printed before the call ("": nothing) */
    int npat;       /* -1: the model cannot decide, any answer */
    const struct bi_pat *pats;
};
#include "builtin.h"

static int bi_match(const char *r, const struct bi_pat *p) {
    if (r[0] != p->kind) return 0;
    if (!p->nf) return 1;
    u64 a[8];
    if (parse_args(r + 1, a, 8) != p->nf) return 0;
    for (int i = 0; i < p->nf; i++)
        if ((a[i] ^ p->v[i]) & p->m[i]) return 0;
    return 1;
}

static void run_builtin(void) {
    static char reply[256];
    puts("memspec repro: "); puts(BI_NAME); putc('\n');
    for (int k = 0; k < (int)(sizeof bi_calls / sizeof bi_calls[0]); k++) {
        const struct bi_call *c = &bi_calls[k];
        int i = 0;
        for (; c->line[i] && i < (int)sizeof line - 1; i++) line[i] = c->line[i];
        line[i] = 0;
        if (c->before[0]) { puts(c->before); putc('\n'); }
        capture = reply; capture_n = 0;
        command();
        capture = 0;
        while (capture_n > 0 && reply[capture_n - 1] == '\n') capture_n--;
        reply[capture_n] = 0;
        int ok = c->npat < 0;
        for (int p = 0; p < c->npat && !ok; p++) ok = bi_match(reply, &c->pats[p]);
        if (ok) continue;
        puts("DIVERGES at "); puts(c->text); putc('\n');
        puts("  command:  "); puts(c->line); putc('\n');
        puts("  clause:   "); puts(c->clause); putc('\n');
        puts("  spec:     "); puts(c->citation); putc('\n');
        puts("  expected: "); puts(c->expected); putc('\n');
        puts("  observed: "); puts(reply); putc('\n');
        puts("VERDICT: DIVERGES ("); puts(c->clause); puts(")\n");
        builtin_exit(1);
    }
    puts("VERDICT: CONFORMS (every answer is one the model allows)\n");
    builtin_exit(0);
}
#endif

static int has_word(const char *s, const char *w) {
    for (; *s; s++) {
        const char *p = s, *q = w;
        while (*q && *p == *q) { p++; q++; }
        if (!*q && (*p == 0 || *p == ' ')) return 1;
    }
    return 0;
}

void kmain(void) {
    volatile u32 *mbi = (volatile u32 *)(KBASE + mbi_phys);
    u32 flags = mbi[0];
    ram_end = (flags & 1) ? HARNESS_LOW + (u64)mbi[2] * 1024 : 32UL << 20;
    if (ram_end > (1UL << 30)) ram_end = 1UL << 30;   /* the harness maps the first GiB */
    const char *cmdline = (flags & 4) ? (const char *)(KBASE + mbi[4]) : "";
    if (has_word(cmdline, "console=e9")) { out_e9 = 1; out_serial = 0; }
    if (has_word(cmdline, "console=both")) out_e9 = 1;
    if ((flags & 8) && mbi[5] > 0) {     /* a batch of commands as the first module (Bochs, GRUB) */
        volatile u32 *mod = (volatile u32 *)(KBASE + mbi[6]);
        u64 len = mod[1] - mod[0];
        if (len > sizeof batch_buf) len = sizeof batch_buf;
        for (u64 i = 0; i < len; i++) batch_buf[i] = *(volatile char *)(KBASE + mod[0] + i);
        batch = batch_buf;
        batch_len = len;
    }
    /* .bootdata symbols have their low (identity) addresses: kmain runs on the boot root */
    extern char gdtr_high[];
    __asm__ volatile("lgdt (%0)" : : "r"((u64)gdtr_high + KBASE) : "memory");
    tables_init();
    seg_init();
    serial_init(!batch && out_serial);
    if (!batch && out_serial) pic_init();
    features_init();
    vmx_probe();
    /* the harness's nested slot: the highest top-level slot below 2^MAXPHYADDR */
    nslot = maxphy >= 48 ? 511 : maxphy >= 40 ? (1UL << (maxphy - 39)) - 1 : 0;
    g_base = nslot << 39;
    fill_pattern();
#ifdef MEMSPEC_BUILTIN
    run_builtin();
#endif
    if (!batch) shm_init();
    puts(shm ? "memspec-testkernel 1 ready shm\n" : "memspec-testkernel 1 ready\n");
    for (;;) {
        int n = read_line();
        if (n < 0) {
            puts("bye\n");
            for (const char *s = "Shutdown"; *s; s++) outb(0x8900, (u8)*s);
            for (;;) __asm__ volatile("cli; hlt");
        }
        if (n == 0) continue;
        command();
    }
}
