/* memspec repro: the memory maps at a checkpoint (os layer; included after procs.c and the named
 * results, with RES, QUIET, NQUIET and BLAME defined before it).
 *
 * At a checkpoint memspec reads each process's /proc/PID/maps and compares it with the model's maps
 * over the ranges the model speaks for: the model's own mappings and the target's quiet ranges
 * (elsewhere a process has mappings of its own: its stack, its libraries).  Both sides are clipped to
 * those windows and adjacent rows with equal permissions merged; the first row that differs is the
 * divergence.  The model's maps were computed when this file was written: each row is a named result
 * plus an offset where it lies near one, so that it follows an address the kernel picked (ASLR). */
typedef struct { u64 s, e; char p[8]; } maprow;
/* an expected row: start and end each as RES[ref] + offset (ref -1: the offset alone), the
 * permissions, and the clause of the model's mapping there (an index into BLAME) */
typedef struct { int rs; u64 s; int re; u64 e; const char *p; int blame; } exprow;

static int write_all(int fd, const void *buf, size_t n) {
  const char *b = buf;
  while (n) { ssize_t r = write(fd, b, n); if (r <= 0) return -1; b += r; n -= (size_t)r; }
  return 0;
}
static int read_all(int fd, void *buf, size_t n) {
  char *b = buf;
  while (n) { ssize_t r = read(fd, b, n); if (r <= 0) return -1; b += r; n -= (size_t)r; }
  return 0;
}

/* in a worker: its /proc/self/maps as rows, a count first (-1: unreadable) */
static void send_maps(int slot) {
  FILE *f = fopen("/proc/self/maps", "r");
  maprow *rows = 0; int n = 0, cap = 0; char line[512];
  if (f) {
    while (fgets(line, sizeof line, f)) {
      int whole = strchr(line, '\n') != 0;
      maprow r; memset(&r, 0, sizeof r);
      if (sscanf(line, "%llx-%llx %7s", &r.s, &r.e, r.p) == 3) {
        if (n == cap) {
          maprow *g = realloc(rows, (size_t)(cap = cap ? 2 * cap : 256) * sizeof *rows);
          if (!g) break;
          rows = g;
        }
        rows[n++] = r;
      }
      while (!whole && fgets(line, sizeof line, f)) whole = strchr(line, '\n') != 0;   /* a long path */
    }
    fclose(f);
  }
  int m = f ? n : -1;
  if (write_all(rep_pipe[slot][1], &m, sizeof m) < 0 || (n && write_all(rep_pipe[slot][1], rows, (size_t)n * sizeof *rows) < 0))
    _exit(3);
  free(rows);
}

/* in the coordinator: the rows of the process served in slot (NULL: none to compare) */
static maprow *observe_in(int slot, int call_no, int *n) {
  request rq; memset(&rq, 0, sizeof rq); rq.idx = -1;
  maprow *rows = 0; int m = -1;
  cur_call = call_no;
  signal(SIGALRM, on_hang);
  alarm(call_limit);
  if (write_all(req_pipe[slot][1], &rq, sizeof rq) < 0 || read_all(rep_pipe[slot][0], &m, sizeof m) < 0 || m < 0) {
    alarm(0); return 0;
  }
  rows = malloc((size_t)(m ? m : 1) * sizeof *rows);
  if (!rows || (m && read_all(rep_pipe[slot][0], rows, (size_t)m * sizeof *rows) < 0)) { alarm(0); free(rows); return 0; }
  alarm(0);
  *n = m;
  return rows;
}

static int cmp_row(const void *a, const void *b) {
  const maprow *x = a, *y = b;
  return x->s < y->s ? -1 : x->s > y->s ? 1 : x->e < y->e ? -1 : x->e > y->e;
}

/* the parts of the sorted rows inside the sorted, disjoint windows [ws, we), adjacent rows with equal
 * permissions merged: one pass over both */
static int clip_merge(const maprow *in, int n, const u64 *ws, const u64 *we, int nw, maprow *out) {
  int i = 0, k = 0;
  for (int w = 0; w < nw; w++) {
    while (i < n && in[i].e <= ws[w]) i++;
    for (int j = i; j < n && in[j].s < we[w]; j++) {
      u64 s = in[j].s > ws[w] ? in[j].s : ws[w], e = in[j].e < we[w] ? in[j].e : we[w];
      if (s >= e) continue;
      if (k && out[k - 1].e == s && !strcmp(out[k - 1].p, in[j].p)) { out[k - 1].e = e; continue; }
      out[k].s = s; out[k].e = e; memcpy(out[k].p, in[j].p, sizeof out[k].p); k++;
    }
  }
  return k;
}

static void print_near(const char *label, const maprow *r, int n, u64 near) {
  int shown = 0;
  printf("  %s", label);
  for (int k = 0; k < n; k++)
    if (r[k].e + 0x10000 > near && r[k].s < near + 0x10000) {
      printf("%s%#llx-%#llx %s", shown ? "; " : "", r[k].s, r[k].e, r[k].p); shown++;
    }
  for (int k = 0; !shown && k < n && k < 3; k++) printf("%s%#llx-%#llx %s", k ? "; " : "", r[k].s, r[k].e, r[k].p);
  if (!n) printf("(nothing mapped)");
  printf("\n");
}

static u64 at(int ref, u64 off) { return ref < 0 ? off : (u64)*RES[ref] + off; }

/* compare process proc's map (served in slot) with the model's rows x after call call_no: 1 (and
 * the divergence printed) if they differ over the windows, else 0 */
static int check_maps(int call_no, int slot, const char *proc, const exprow *x, int nx) {
  if (worker_pid[slot] <= 0) return 0;
  int no = 0;
  maprow *seen = observe_in(slot, call_no, &no);
  if (!seen) return 0;
  int nwin = nx + NQUIET;
  maprow *want = malloc((size_t)(nx ? nx : 1) * sizeof *want), *win = malloc((size_t)(nwin ? nwin : 1) * sizeof *win);
  maprow *cw = malloc((size_t)(nx ? nx : 1) * sizeof *cw), *cs = malloc((size_t)(no ? no : 1) * sizeof *cs);
  u64 *ws = malloc((size_t)(nwin ? nwin : 1) * sizeof *ws), *we = malloc((size_t)(nwin ? nwin : 1) * sizeof *we);
  if (!want || !win || !cw || !cs || !ws || !we) { printf("out of memory comparing the maps\n"); exit(2); }
  for (int k = 0; k < nx; k++) {
    want[k].s = at(x[k].rs, x[k].s); want[k].e = at(x[k].re, x[k].e);
    snprintf(want[k].p, sizeof want[k].p, "%s", x[k].p);
    win[k] = want[k];
  }
  for (int k = 0; k < NQUIET; k++) { win[nx + k].s = QUIET[k][0]; win[nx + k].e = QUIET[k][1]; win[nx + k].p[0] = 0; }
  qsort(want, (size_t)nx, sizeof *want, cmp_row);
  qsort(seen, (size_t)no, sizeof *seen, cmp_row);
  qsort(win, (size_t)nwin, sizeof *win, cmp_row);
  int nw = 0;           /* the windows: overlapping and touching ones joined */
  for (int k = 0; k < nwin; k++) {
    if (win[k].s >= win[k].e) continue;
    if (nw && win[k].s <= we[nw - 1]) { if (win[k].e > we[nw - 1]) we[nw - 1] = win[k].e; }
    else { ws[nw] = win[k].s; we[nw] = win[k].e; nw++; }
  }
  int a = clip_merge(want, nx, ws, we, nw, cw), b = clip_merge(seen, no, ws, we, nw, cs);
  int differ = a != b;
  u64 addr = 0;
  int k = 0;
  for (; k < a && k < b; k++)
    if (cw[k].s != cs[k].s || cw[k].e != cs[k].e || strcmp(cw[k].p, cs[k].p)) {
      differ = 1;
      addr = cw[k].s != cs[k].s ? (cw[k].s < cs[k].s ? cw[k].s : cs[k].s)
           : cw[k].e != cs[k].e ? (cw[k].e < cs[k].e ? cw[k].e : cs[k].e) : cw[k].s;
      break;
    }
  if (differ && k == (a < b ? a : b)) addr = a > b ? cw[k].s : cs[k].s;
  if (differ) {
    int blame = 0;      /* the clause of the model's mapping at the address (none there: BLAME[0]) */
    for (int j = 0; j < nx; j++)
      if (at(x[j].rs, x[j].s) <= addr && addr < at(x[j].re, x[j].e)) { blame = x[j].blame; break; }
    printf("DIVERGES at the checkpoint after call %d: process %s: memory map differs at %#llx\n"
           "  clause:   %s\n  spec:     %s\n            [%s]\n  compared: %s: %s\n"
           "            (the model's mappings and the quiet ranges, adjacent equal rows merged)\n",
           call_no, proc, addr, BLAME[blame][0], BLAME[blame][1], BLAME[blame][2], MAPS_CLAUSE[0], MAPS_CLAUSE[1]);
    print_near("expected: ", cw, a, addr);
    print_near("observed: ", cs, b, addr);
  }
  free(want); free(win); free(cw); free(cs); free(ws); free(we); free(seen);
  return differ;
}
