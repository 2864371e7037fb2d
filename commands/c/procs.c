/* memspec repro: one worker process per program process; NPROC is defined before this part. */
/* ---- processes: a worker per program process; the coordinator sends it calls ------------ */
typedef struct { int idx; u64 a[6]; } request;
static int req_pipe[NPROC][2], rep_pipe[NPROC][2];
static pid_t worker_pid[NPROC];
static outcome do_call(int idx, const u64 *A);
static void serve(int slot) {
  request rq;
  for (;;) {
    if (read(req_pipe[slot][0], &rq, sizeof rq) != (ssize_t)sizeof rq) _exit(0);
    outcome o = do_call(rq.idx, rq.a);
    if (write(rep_pipe[slot][1], &o, sizeof o) != (ssize_t)sizeof o) _exit(3);
  }
}
static void start_worker(int slot) {  /* in the coordinator: the program's first process */
  pid_t pid = fork();
  if (pid == 0) { install_handler(); start_process(); serve(slot); }
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
static outcome run_in(int slot, int idx, const u64 *A) {
  request rq; memset(&rq, 0, sizeof rq); rq.idx = idx; memcpy(rq.a, A, sizeof rq.a);
  outcome o = {K_DIED, 0, 0, 0};
  if (write(req_pipe[slot][1], &rq, sizeof rq) != (ssize_t)sizeof rq) return o;
  if (read(rep_pipe[slot][0], &o, sizeof o) != (ssize_t)sizeof o) { outcome d = {K_DIED, 0, 0, 0}; return d; }
  return o;
}
