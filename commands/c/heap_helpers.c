/* memspec repro: the malloc family's calls and the table of live blocks (included after prelude.c). */
/* ---- the malloc family, through volatile pointers so that the compiler keeps every call ---- */
static void *(*volatile p_malloc)(size_t) = malloc;
static void *(*volatile p_calloc)(size_t, size_t) = calloc;
static void *(*volatile p_realloc)(void *, size_t) = realloc;
static void (*volatile p_free)(void *) = free;
static void *(*volatile p_aligned_alloc)(size_t, size_t) = aligned_alloc;
static void *(*volatile p_memalign)(size_t, size_t) = memalign;
static int (*volatile p_posix_memalign)(void **, size_t, size_t) = posix_memalign;
static size_t (*volatile p_usable)(void *) = malloc_usable_size;

/* live blocks (pointer, size asked for), as the libc target keeps them */
#define MAXLIVE 4096
static u64 live_p[MAXLIVE], live_n[MAXLIVE]; static int nlive;
static void live_add(u64 p, u64 n) { if (nlive < MAXLIVE) { live_p[nlive] = p; live_n[nlive] = n; nlive++; } }
static void live_del(u64 p) { for (int i = 0; i < nlive; i++) if (live_p[i] == p) { live_p[i] = live_p[--nlive]; live_n[i] = live_n[nlive]; return; } }
static int overlaps_live(u64 p, u64 n) {
  u64 e = p + (n ? n : 1);
  for (int i = 0; i < nlive; i++) if (p < live_p[i] + (live_n[i] ? live_n[i] : 1) && live_p[i] < e) return 1;
  return 0;
}
static outcome c_malloc(u64 n) { errno = 0; return ptrret(p_malloc((size_t)n)); }
static outcome c_calloc(u64 m, u64 n) { errno = 0; return ptrret(p_calloc((size_t)m, (size_t)n)); }
static outcome c_realloc(u64 p, u64 n) { errno = 0; return ptrret(p_realloc((void *)(uintptr_t)p, (size_t)n)); }
static outcome c_free(u64 p) { p_free((void *)(uintptr_t)p); return ok(); }
static outcome c_aligned_alloc(u64 a, u64 n) { errno = 0; return ptrret(p_aligned_alloc((size_t)a, (size_t)n)); }
static outcome c_memalign(u64 a, u64 n) { errno = 0; return ptrret(p_memalign((size_t)a, (size_t)n)); }
static outcome c_posix_memalign(u64 a, u64 n) {
  void *p = 0; int r = p_posix_memalign(&p, (size_t)a, (size_t)n);
  if (r) { outcome o = {K_VALUE, 0, r, 0}; return o; }
  return ptrret(p);
}
static outcome c_malloc_usable_size(u64 p) { return val((long long)p_usable((void *)(uintptr_t)p)); }
static outcome c_heap_store(u64 a, u64 v) { *(volatile unsigned char *)(uintptr_t)a = (unsigned char)v; return ok(); }
static outcome c_heap_load(u64 a) { return val(*(volatile unsigned char *)(uintptr_t)a); }
static outcome c_heap_fill(u64 a, u64 n, u64 v) { memset((void *)(uintptr_t)a, (int)(v & 0xff), (size_t)n); return ok(); }
static outcome c_heap_count(u64 a, u64 n, u64 v) {
  long long c = 0; for (u64 i = 0; i < n; i++) c += ((unsigned char *)(uintptr_t)a)[i] == (unsigned char)v; return val(c);
}
static void limit_memory(u64 budget) {
  /* the libc target's memory limit: what the process maps now plus the budget (RLIMIT_AS) */
  if (!budget) return;
  FILE *f = fopen("/proc/self/statm", "r"); unsigned long pages = 0;
  if (f) { if (fscanf(f, "%lu", &pages) != 1) pages = 0; fclose(f); }
  struct rlimit r = { (rlim_t)(pages * 4096 + budget), (rlim_t)(pages * 4096 + budget) };
  setrlimit(RLIMIT_AS, &r);
}
