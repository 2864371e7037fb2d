/* Standalone reproducer: MOV to CR0 with a 1 in bits 63:32 must raise #GP(0).
 *
 * Intel SDM Vol. 2B, MOV - Move to/from Control Registers, 64-Bit Mode Exceptions:
 * "#GP(0) ... If an attempt is made to write a 1 to CR0[63:32]."  (clause sdm.cr0.rsvd-gp)
 *
 * A VM through /dev/kvm: one vCPU put straight into 64-bit mode (KVM_SET_SREGS), identity-mapped
 * 2 MiB page, an IDT whose #GP handler writes 0x0d to a marker byte and halts.  The guest runs
 *     mov rax, 0x0000000180010011 ; mov cr0, rax ; mov byte [0x5000], 1 ; hlt
 * Conforming: the #GP handler runs (marker 0x0d), exit 0.  Diverging: the MOV completes (marker 1,
 * CR0 read back without bit 32), exit 1.  Where KVM's instruction emulator executes the MOV (all
 * CPL 0 code under kvm-pvm; invalid guest state emulation), emulator_set_cr() passes the value
 * through mk_cr_64(u64, u32), which drops bits 63:32 before kvm_set_cr0() can check them.
 * Hardware-assisted KVM intercepts MOV CR0 with the whole value and conforms.
 *
 * Build: cc -O2 -o kvm-cr0 kvm-mov-cr0-high-bits.c     Run: ./kvm-cr0 (needs /dev/kvm)
 * Control: -DNEW_CR0=0xa0010011ULL (NW without CD, which the checks KVM does make refuse) must
 * report CONFORMS: it shows that the #GP handler path works.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define MEM (2u << 20)
#define MARKER 0x5000
#ifndef NEW_CR0
#define NEW_CR0 0x0000000180010011ULL   /* PE|ET|WP|PG with bit 32 set */
#endif

static void die(const char *what) { fprintf(stderr, "kvm-cr0: %s: %s\n", what, strerror(errno)); exit(2); }

static void idt_gate(uint8_t *mem, int vec, uint64_t handler) {
  uint8_t *e = mem + 0x600 + 16 * vec;
  memset(e, 0, 16);
  e[0] = handler & 0xff; e[1] = (handler >> 8) & 0xff;
  e[2] = 0x08;                       /* code segment selector */
  e[5] = 0x8e;                       /* present, DPL 0, 64-bit interrupt gate */
  e[6] = (handler >> 16) & 0xff; e[7] = (handler >> 24) & 0xff;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, int code) {
  memset(s, 0, sizeof *s);
  s->base = 0; s->limit = 0xffffffff; s->selector = sel; s->type = type; s->present = 1;
  s->dpl = 0; s->s = 1; s->g = 1; s->l = code; s->db = !code;
}

int main(void) {
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("open /dev/kvm");
  if (ioctl(kvm, KVM_GET_API_VERSION, 0) != 12) { fprintf(stderr, "kvm-cr0: KVM API is not 12\n"); return 2; }
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  uint8_t *mem = mmap(0, MEM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  struct kvm_userspace_memory_region region = { .slot = 0, .guest_phys_addr = 0, .memory_size = MEM,
                                                .userspace_addr = (uint64_t)(uintptr_t)mem };
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");

  /* page tables: PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> one 2 MiB page at 0 */
  uint64_t *pml4 = (uint64_t *)(mem + 0x1000), *pdpt = (uint64_t *)(mem + 0x2000), *pd = (uint64_t *)(mem + 0x3000);
  pml4[0] = 0x2000 | 3; pdpt[0] = 0x3000 | 3; pd[0] = 0 | 0x83;
  /* GDT at 0x500: null, 64-bit code (0x08), data (0x10) */
  uint64_t *gdt = (uint64_t *)(mem + 0x500);
  gdt[0] = 0; gdt[1] = 0x00af9a000000ffffULL; gdt[2] = 0x00cf92000000ffffULL;
  /* handlers: any vector writes 0xee to the marker and halts; #GP writes 0x0d */
  static const uint8_t other[] = {0xc6, 0x04, 0x25, 0x00, 0x50, 0x00, 0x00, 0xee, 0xf4};
  static const uint8_t gp[] = {0xc6, 0x04, 0x25, 0x00, 0x50, 0x00, 0x00, 0x0d, 0xf4};
  memcpy(mem + 0x8000, other, sizeof other);
  memcpy(mem + 0x8100, gp, sizeof gp);
  for (int v = 0; v < 32; v++) idt_gate(mem, v, 0x8000);
  idt_gate(mem, 13, 0x8100);
  /* the test: mov rax, NEW_CR0; mov cr0, rax; mov byte [MARKER], 1; hlt */
  uint8_t code[] = {0x48, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0x0f, 0x22, 0xc0,
                    0xc6, 0x04, 0x25, 0x00, 0x50, 0x00, 0x00, 0x01, 0xf4};
  uint64_t v = NEW_CR0;
  memcpy(code + 2, &v, 8);
  memcpy(mem + 0x7000, code, sizeof code);

  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  /* the guest's CPUID: what KVM supports (long mode must be enumerated for EFER.LME) */
  int n = 256;
  struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + n * sizeof(struct kvm_cpuid_entry2));
  cpuid->nent = n;
  if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
  if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0) die("KVM_SET_CPUID2");
  int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run *run = mmap(0, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap kvm_run");

  struct kvm_sregs sregs;
  if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  seg(&sregs.cs, 0x08, 11, 1);
  seg(&sregs.ds, 0x10, 3, 0); sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
  memset(&sregs.tr, 0, sizeof sregs.tr);
  sregs.tr.limit = 0x67; sregs.tr.type = 11; sregs.tr.present = 1; sregs.tr.selector = 0x18;
  sregs.gdt.base = 0x500; sregs.gdt.limit = 23;
  sregs.idt.base = 0x600; sregs.idt.limit = 32 * 16 - 1;
  sregs.cr0 = 0x80010011; sregs.cr3 = 0x1000; sregs.cr4 = 0x20; sregs.efer = 0x500;
  if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs;
  memset(&regs, 0, sizeof regs);
  regs.rip = 0x7000; regs.rsp = 0x9000; regs.rflags = 2;
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");

  for (int i = 0; i < 16; i++) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) { if (errno == EINTR) continue; die("KVM_RUN"); }
    if (run->exit_reason == KVM_EXIT_HLT) break;
    fprintf(stderr, "kvm-cr0: unexpected exit %u (suberror %u)\n", run->exit_reason,
            run->exit_reason == KVM_EXIT_INTERNAL_ERROR ? run->internal.suberror : 0);
    return 2;
  }
  if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  uint8_t marker = mem[MARKER];
  if (marker == 0x0d) {
    printf("CONFORMS: mov cr0, 0x%llx raised #GP(0)\n", (unsigned long long)NEW_CR0);
    return 0;
  }
  printf("DIVERGES at mov cr0, 0x%llx\n"
         "  clause:   sdm.cr0.rsvd-gp: MOV to CR0 with a 1 in bits 63:32 raises #GP(0)\n"
         "            [Intel SDM Vol. 2B, MOV - Move to/from Control Registers, 64-Bit Mode Exceptions]\n"
         "  expected: #GP\n"
         "  observed: %s; CR0 reads back 0x%llx\n",
         (unsigned long long)NEW_CR0,
         marker == 1 ? "the MOV completed" : "another exception", (unsigned long long)sregs.cr0);
  return 1;
}
