/* memspec repro: one worker process per program process; NPROC is defined before this part. */
/* ---- processes: a worker per program process; the coordinator sends it calls ------------ */
typedef struct { int idx; u64 a[6]; } request;
static int req_pipe[NPROC][2], rep_pipe[NPROC][2];
static pid_t worker_pid[NPROC];
static outcome do_call(int idx, const u64 *A);
#ifdef WITH_MAPS
static void send_maps(int slot);        /* maps.c: a request with idx -1 asks for the worker's maps */
#endif
static void serve(int slot) {
  request rq;
  for (;;) {
    if (read(req_pipe[slot][0], &rq, sizeof rq) != (ssize_t)sizeof rq) _exit(0);
#ifdef WITH_MAPS
    if (rq.idx < 0) { send_maps(slot); continue; }
#endif
    outcome o = do_call(rq.idx, rq.a);
    if (write(rep_pipe[slot][1], &o, sizeof o) != (ssize_t)sizeof o) _exit(3);
  }
}
static void start_worker(int slot) {  /* in the coordinator: the program's first process */
  pid_t pid = fork();
  if (pid == 0) { signal(SIGALRM, SIG_DFL); install_handler(); start_process(); serve(slot); }
  worker_pid[slot] = pid;
}
static outcome c_fork(int slot) {       /* in a worker: its child serves the new process's slot */
  pid_t pid = fork();
  if (pid < 0) return sysret(-1);
  if (pid == 0) { start_process(); serve(slot); }
  return val(pid);
}
static outcome c_exit(void) {
  outcome o = ok();
  /* the reply goes first: the coordinator waits for it */
  return o;
}
/* a call that gets no answer within call_limit seconds: HANG (exit 4), every worker killed (a
 * worker spinning in an emulator may not stop for SIGTERM) */
static unsigned call_limit = 60;
static int hang_call;                   /* the call memspec's run hung at (0: none) */
static const char *hang_text = "", *hang_clause = "memspec.target.alive";
static volatile int cur_call;
static void on_hang(int sig) {
  (void)sig;
  char b[512];
  int n = hang_call && cur_call == hang_call
      ? snprintf(b, sizeof b, "HANG at call %d: %s\n  clause:   %s\n  expected: an outcome\n"
                 "  observed: no answer within %u s (as in memspec's run)\nVERDICT: HANG\n",
                 hang_call, hang_text, hang_clause, call_limit)
      : snprintf(b, sizeof b, "HANG at call %d: no answer within %u s\nVERDICT: HANG\n", cur_call, call_limit);
  if (write(1, b, n > 0 && n < (int)sizeof b ? (size_t)n : 0) < 0) {}
  for (int k = 0; k < NPROC; k++) if (worker_pid[k] > 0) kill(worker_pid[k], SIGKILL);
  power_off_if_init();
  _exit(4);
}
static outcome run_in(int slot, int idx, const u64 *A) {
  request rq; memset(&rq, 0, sizeof rq); rq.idx = idx; memcpy(rq.a, A, sizeof rq.a);
  outcome o = {K_DIED, 0, 0, 0};
  cur_call = idx + 1;
  signal(SIGALRM, on_hang);
  alarm(call_limit);
  if (write(req_pipe[slot][1], &rq, sizeof rq) != (ssize_t)sizeof rq) { alarm(0); return o; }
  ssize_t got = read(rep_pipe[slot][0], &o, sizeof o);
  alarm(0);
  if (got != (ssize_t)sizeof o) { outcome d = {K_DIED, 0, 0, 0}; return d; }
  return o;
}
