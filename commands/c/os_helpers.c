/* memspec repro: the os layer's calls as the linux target makes them (included after prelude.c). */
/* ---- the os layer's calls, as the linux target makes them (raw system calls) --------------- */
static char shm_prefix[64];
static char tmpdir[256];
static int nfiles;
static int pagemap_fd = -1;
static long flt0[2];
/* as the first process of a Linux (User-mode Linux over the host's files) /proc is the host's
   directory: mount the guest's own there, so that /proc/self/maps is this process's, as memspec's
   uml target does (its init) */
static void mount_proc_if_init(void) {
  if (getpid() == 1 && mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, 0) < 0)
    printf("note: mount /proc: %s\n", strerror(errno));
}
static void start_process(void) {
  pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
  struct rusage ru; getrusage(RUSAGE_SELF, &ru); flt0[0] = ru.ru_minflt; flt0[1] = ru.ru_majflt;
}
static void shm_name(const char *name, char *out, size_t n) {
  /* names get this run's prefix (one system-wide namespace); names the C library rejects stay as written */
  const char *s = name; while (*s == '/') s++;
  if (!*s || strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, "..") || strlen(s) + strlen(shm_prefix) > 255) {
    snprintf(out, n, "%s", name); return;
  }
  snprintf(out, n, "/%s%s", shm_prefix, s);
}
static outcome c_shm_open(const char *name, u64 oflag, u64 mode) {
  char real[300]; shm_name(name, real, sizeof real); errno = 0;
  int fd = shm_open(real, (int)oflag, (mode_t)mode);
  return fd < 0 ? sysret(-1) : val(fd);
}
static outcome c_shm_unlink(const char *name) {
  char real[300]; shm_name(name, real, sizeof real); errno = 0;
  return shm_unlink(real) < 0 ? sysret(-1) : val(0);
}
static outcome c_memfd_create(const char *name, u64 flags) { return sysret(syscall(SYS_memfd_create, name, (unsigned)(flags & ~1ULL))); }
static outcome c_open_file(u64 size, u64 oflag) {
  char path[400];
  snprintf(path, sizeof path, "%s/f%d-%d", tmpdir, (int)getpid(), ++nfiles);
  int fd = open(path, O_CREAT | O_RDWR, 0600);
  if (fd < 0 || ftruncate(fd, (off_t)size) < 0) return sysret(-1);
  close(fd);
  return sysret(open(path, (int)(oflag & (3 | O_APPEND))));
}
static outcome c_pipe(void) { int p[2]; if (pipe(p) < 0) return sysret(-1); close(p[1]); return val(p[0]); }  /* the program holds the read end only: as the targets do */
static outcome c_set_memlock_limit(long long soft) {
  struct rlimit r; getrlimit(RLIMIT_MEMLOCK, &r);
  r.rlim_cur = soft < 0 ? RLIM_INFINITY : (rlim_t)soft;
  return setrlimit(RLIMIT_MEMLOCK, &r) < 0 ? sysret(-1) : val(0);
}
static outcome c_set_fsize_limit(long long soft) {
  /* a write past RLIMIT_FSIZE also sends SIGXFSZ, which memspec's targets ignore: so does this file */
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit r; getrlimit(RLIMIT_FSIZE, &r);
  r.rlim_cur = soft < 0 ? RLIM_INFINITY : (rlim_t)soft;
  errno = 0;
  if (setrlimit(RLIMIT_FSIZE, &r) < 0) { if (errno == EPERM) errno = EINVAL; return sysret(-1); }
  return val(0);
}
static outcome c_drop_privileges(void) {
  if (setgroups(0, 0) < 0 || setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0) return sysret(-1);
  return val(0);
}
static u64 pagemap_pfn(u64 a) {
  uint64_t e = 0;
  if (pagemap_fd < 0 || pread(pagemap_fd, &e, 8, (off_t)((a >> 12) * 8)) != 8) return 0;
  return e >> 63 ? e & ((1ULL << 55) - 1) : 0;
}
static outcome c_pfn_of(u64 a) { return val((long long)pagemap_pfn(a)); }
static outcome c_thp_mapped(u64 a) {
  u64 pfn = pagemap_pfn(a); uint64_t fl = 0;
  if (!pfn) return val(0);
  int fd = open("/proc/kpageflags", O_RDONLY);
  if (fd < 0 || pread(fd, &fl, 8, (off_t)(pfn * 8)) != 8) { if (fd >= 0) close(fd); return val(0); }
  close(fd);
  return val((fl >> 22) & 1);
}
static outcome c_flt(int which) {
  struct rusage ru; getrusage(RUSAGE_SELF, &ru);
  return val(which ? ru.ru_majflt - flt0[1] : ru.ru_minflt - flt0[0]);
}
static outcome c_get_node(u64 a) {
  void *page = (void *)(uintptr_t)a; int status = -999;
  long r = syscall(SYS_move_pages, 0, 1UL, &page, 0, &status, 0);
  if (r < 0) return sysret(-1);
  if (status < 0) { outcome o = {K_ERRNO, -1, -status, 0}; return o; }
  return val(status);
}
static outcome c_mbind(u64 a, u64 len, u64 mode, u64 mask) {
  unsigned long m = (unsigned long)mask;
  return sysret(syscall(SYS_mbind, a, len, mode, &m, 64UL, 0UL));
}
static outcome c_mincore(u64 a, u64 len) {
  u64 npages = (len + 4095) / 4096, room = npages > (1ULL << 30) ? (1ULL << 30) : npages;
  unsigned char *vec = mmap(0, room ? room : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  long r = syscall(SYS_mincore, a, len, vec);
  if (r < 0) { outcome o = sysret(-1); munmap(vec, room ? room : 1); return o; }
  u64 bits = 0;
  for (u64 i = 0; i < room && i < 64; i++) if (vec[i] & 1) bits |= 1ULL << i;
  munmap(vec, room ? room : 1);
  return val((long long)bits);
}
/* one byte read (its value, or 256 at end of file) and count bytes of one value written, as the
   linux target does */
static outcome c_read1(u64 fd, int positional, u64 off) {
  unsigned char b = 0;
  long r = positional ? syscall(SYS_pread64, fd, &b, 1UL, off) : syscall(SYS_read, fd, &b, 1UL);
  if (r < 0) return sysret(-1);
  return val(r == 1 ? b : 256);
}
static outcome c_read(u64 fd) { return c_read1(fd, 0, 0); }
static outcome c_pread(u64 fd, u64 off) { return c_read1(fd, 1, off); }
static outcome c_writen(u64 fd, u64 v, u64 count, int positional, u64 off) {
  size_t n = count ? (size_t)count : 1;
  unsigned char *buf = malloc(n);
  if (!buf) return sysret(-1);
  memset(buf, (int)(v & 0xff), n);
  long r = positional ? syscall(SYS_pwrite64, fd, buf, count, off) : syscall(SYS_write, fd, buf, count);
  outcome o = sysret(r);
  free(buf);
  return o;
}
static outcome c_write(u64 fd, u64 v, u64 count) { return c_writen(fd, v, count, 0, 0); }
static outcome c_pwrite(u64 fd, u64 off, u64 v, u64 count) { return c_writen(fd, v, count, 1, off); }
static outcome c_lseek(u64 fd, u64 off, u64 whence) { return sysret(syscall(SYS_lseek, fd, off, whence)); }
static void cleanup_files(void) {
  DIR *d = opendir(tmpdir); struct dirent *e; char p[600];
  if (!d) return;
  while ((e = readdir(d))) if (e->d_name[0] != '.') { snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name); unlink(p); }
  closedir(d); rmdir(tmpdir);
}
/* map_pages as the linux target makes it: one-page private anonymous mappings, every other page from
   a, each with MAP_FIXED_NOREPLACE, stopping at the first mmap that fails; the count mapped, with
   that mmap's errno beside it.  The verdict was computed with the target's fact base_maps (its own
   mappings, besides the program's): before the first call this process maps single pages far from
   everything until it has as many of its own, so that it meets vm.max_map_count where the target did. */
#ifndef BASE_MAPS
#define BASE_MAPS 0
#endif
static int map_pages_padded;
static void pad_own_mappings(void) {
  FILE *f = fopen("/proc/self/maps", "r"); char line[512]; long own = 0;
  if (!f) return;
  while (fgets(line, sizeof line, f)) {
    unsigned long long s = strtoull(line, 0, 16);
    if (s < 0x100000000000ULL || s >= 0x100000000000ULL + (1ULL << 36)) own++;   /* outside the sandbox window */
  }
  fclose(f);
  for (long k = 0; own + k < BASE_MAPS; k++)
    if (syscall(SYS_mmap, 0x500000000000ULL + 2 * (u64)k * 4096, 4096UL, 0UL, 0x100022UL, -1L, 0UL) == -1) break;
}
static outcome c_map_pages(u64 a, u64 n, u64 prot) {
  if (n > (1ULL << 17) || (a + 2 * n * 4096 < a && a + 2 * n * 4096 != 0)) { errno = EINVAL; return sysret(-1); }
  if (!map_pages_padded) { map_pages_padded = 1; pad_own_mappings(); }
  for (u64 k = 0; k < n; k++)
    if (syscall(SYS_mmap, a + 2 * k * 4096, 4096UL, prot, 0x100022UL, -1L, 0UL) == -1) {
      outcome o = {K_VALUE, (long long)k, errno, 0};
      return o;
    }
  return val((long long)n);
}
