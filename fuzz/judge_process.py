"""The judge in a second process: judging on the other core while this one runs the target.

A thread cannot judge beside the run when the run is Python too (the agent's answers decoded,
unicorn or KVM driven from this interpreter): the two share one interpreter lock.  A forked
process does not.  ``JudgeProcess`` forks once, from the thread that makes it, a process that
has everything the parent had at that moment (the model, the judge function and what it
closes over: a broken model of a test, a user's model), and then only judges:

* ``submit(program, run)`` / ``result()``: a finished run in, its judgement back
  (``RunAhead``: program k judged there while program k+1 runs here);
* ``judge_stream(program, stream)``: a run still going (a target's ``stream``: ``outcome(i)``,
  ``observation(i)``, ``finish()``, with its ``outcomes`` and ``observations`` so far) is
  forwarded as its outcomes arrive, a batch at a time, and judged there as they come; the
  judgement is the one ``judge`` gives the finished run.

What crosses is pickled (records.py gives its records cheap reductions), framed by a length.
The process closes every descriptor it inherited but its two pipes -- a target's pipe held
open there would keep the target from ever seeing its end -- leads a process group of its own
(memspec/children.py: ended with the others at exit or on an interrupt, and out of the way of
a Ctrl-C at the terminal, which the parent takes), and dies with its parent.  A judge function
that raises sends its exception back, raised again here; a process that dies is an error here,
never a verdict.

The cyclic garbage collector does not run while a job is judged there: what the judgement builds
(a model's state, its history, the passing checks) lives until the judgement ends, and each full
collection walked all of it again -- judging kvm's figure program, every other judgement cost half
as much again.  The objects the process was forked with are frozen out of the collector's walks
(``gc.freeze``), and after each answer has gone the objects made since are collected once: the
judgement's model and its cycles.
"""

from __future__ import annotations

import gc
import os
import pickle
import select
import signal
import struct
from collections import deque
from typing import Any, Callable

from memspec.program import Program
from memspec.records import Judgement, RunResult, RunStatus
from memspec.streams import RunReader
from memspec.children import fork_in_group, kill_group

_LEN = struct.Struct("<I")
BATCH = 64              # outcomes forwarded per message while a stream runs
_PIPE_SIZE = 1 << 20    # fewer wake-ups: a judgement or a batch fits the pipe
_READ = 1 << 16         # bytes asked of a pipe a read (more for the rest of a longer message)
_KEPT = 4               # programs the judge process keeps, the last sent (both sides drop the same ones)


class JudgeDied(RuntimeError):
    """The judge process ended without answering."""


def _frame(obj: Any) -> memoryview:
    """``obj`` pickled, after its length: one message on a pipe."""
    data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    return memoryview(_LEN.pack(len(data)) + data)


def _send(fd: int, obj: Any) -> None:
    view = _frame(obj)
    while view:
        view = view[os.write(fd, view):]


class _Inbox:
    """The messages coming in on a pipe.  A read takes what the pipe holds (up to ``_READ``, or the
    rest of a long message), and each message is taken from those bytes: a job and its batches, or
    several answers, arrive in one read, and a waiting side knows a whole message is there
    (``ready``) without a system call."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._data = b""        # bytes read and not yet taken, from ``_at`` on
        self._at = 0

    def ready(self) -> bool:
        """Is a whole message read already?"""
        have = len(self._data) - self._at
        return have >= _LEN.size and have - _LEN.size >= _LEN.unpack_from(self._data, self._at)[0]

    def pending(self) -> bool:
        """Are bytes of a message read already?"""
        return len(self._data) > self._at

    def take(self) -> Any:
        """The next message, reading as long as it takes (EOFError at the pipe's end)."""
        data, at = self._data, self._at
        while True:
            have = len(data) - at
            if have >= _LEN.size:
                (n,) = _LEN.unpack_from(data, at)
                end = at + _LEN.size + n
                if len(data) >= end:
                    self._at = end
                    return pickle.loads(memoryview(data)[at + _LEN.size:end])
                want = end - len(data)
            else:
                want = _LEN.size - have
            more = os.read(self.fd, max(want, _READ))
            if not more:
                self._data, self._at = b"", 0
                raise EOFError
            data = data[at:] + more if at < len(data) else more
            at = 0
            self._data, self._at = data, 0


class _Forwarded(RunReader):
    """A run as the judge process sees it while the parent forwards it: ``judge``'s stream."""

    def __init__(self, inbox: _Inbox) -> None:
        super().__init__()
        self.inbox = inbox

    def _more(self) -> None:
        msg = self.inbox.take()
        if msg[0] == "more":
            self.outcomes += msg[1]
            self.observations += msg[2]
        elif msg[0] == "end":
            self.result = RunResult(tuple(self.outcomes), tuple(self.observations), msg[1], msg[2])
        else:
            raise RuntimeError(f"judge process: unexpected message {msg[0]!r} in a stream")


def _portable(e: BaseException) -> BaseException:
    """The exception itself if it crosses a pipe, else a RuntimeError that says what it was."""
    try:
        pickle.loads(pickle.dumps(e, pickle.HIGHEST_PROTOCOL))
        return e
    except Exception:   # noqa: BLE001 -- anything that does not round-trip
        return RuntimeError(f"{type(e).__name__}: {e}")


def _detached(result: Any, outcomes: Any) -> Any:
    """A judgement without the run's own outcomes (the parent has them: ``_attached``)."""
    return result.detached(outcomes) if type(result) is Judgement and outcomes is not None else result


def _attached(result: Any, outcomes: Any) -> Any:
    return result.attach(outcomes) if type(result) is Judgement and outcomes is not None else result


def _serve(judge: Callable[[Program, Any], Any], jobs: int, answers: int) -> int:
    """The judge process's loop: until its parent closes the jobs pipe (or dies)."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)      # PR_SET_PDEATHSIG: the parent's death ends it
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        return 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)        # the parent takes Ctrl-C and ends this process
    keep = {0, 1, 2, jobs, answers}
    try:
        inherited = [int(f) for f in os.listdir("/proc/self/fd")]
    except OSError:         # no /proc: every descriptor number up to the limit
        inherited = list(range(3, min(os.sysconf("SC_OPEN_MAX"), 1 << 16)))
    for fd in inherited:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    programs: dict[int, Program] = {}       # the programs the parent keeps sending, by its key
    inbox = _Inbox(jobs)
    gc.disable()            # collected between jobs instead (see the module doc)
    gc.freeze()
    jobs_done = 0
    source: Any = None
    while True:
        try:
            msg = inbox.take()
        except EOFError:
            return 0
        kind = msg[0]
        try:
            if kind in ("run", "stream"):
                key, program = msg[1], msg[2]
                if program is None:
                    program = programs[key]
                else:
                    programs[key] = program
                    while len(programs) > _KEPT:
                        del programs[next(iter(programs))]
            if kind == "run":
                answer: Any = ("ok", _detached(judge(program, msg[3]), getattr(msg[3], "outcomes", None)))
            elif kind == "stream":
                source = _Forwarded(inbox)
                try:
                    answer = ("ok", _detached(judge(program, source), source.outcomes))
                finally:
                    source.finish()             # the rest of the run, read and dropped
            else:
                answer = ("error", RuntimeError(f"judge process: unknown job {kind!r}"))
        except Exception as e:      # noqa: BLE001 -- handed back, raised in the parent
            answer = ("error", _portable(e))
        try:
            _send(answers, answer)
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            if isinstance(answer[1], BaseException):      # a judge that returns its exception (fuzz's)
                _send(answers, (answer[0], _portable(answer[1])))
            else:
                _send(answers, ("error", RuntimeError(f"judge process: the judgement does not cross processes: {e}")))
        answer = msg = source = None
        jobs_done += 1
        # the job's garbage and its cycles, after the answer has gone; now and then the older
        # generation too (programs dropped from ``programs``, whatever outlived a collection)
        gc.collect(2 if jobs_done % 64 == 0 else 1)


class JudgeProcess:
    """A forked process that runs ``judge(program, run)`` for this one (see the module doc)."""

    def __init__(self, judge: Callable[[Program, Any], Any]) -> None:
        jobs_r, self._jobs = os.pipe()
        self._answers, answers_w = os.pipe()
        for fd in (self._jobs, answers_w):
            try:
                import fcntl
                fcntl.fcntl(fd, 1031, _PIPE_SIZE)       # F_SETPIPE_SZ; the default 64 KiB works too
            except OSError:
                pass
        try:
            self.pid = fork_in_group(lambda: _serve(judge, jobs_r, answers_w))
        finally:
            os.close(jobs_r)
            os.close(answers_w)
        # the last programs sent, by key, kept alive here so that a key is never reused: a program
        # judged again (a benchmark's, a long program's re-runs) is not pickled again
        self._kept: dict[int, Program] = {}
        self._keys = 0
        # per job asked and not yet taken, its run's outcomes (the judgement comes without them),
        # and the answers read while a job was being sent
        self._outcomes: deque[Any] = deque()
        self._ready: deque[Any] = deque()
        self._inbox = _Inbox(self._answers)
        os.set_blocking(self._jobs, False)

    def _program(self, program: Program) -> tuple[int, Program | None]:
        for key, kept in self._kept.items():
            if kept is program:
                return key, None
        self._keys += 1
        self._kept[self._keys] = program
        while len(self._kept) > _KEPT:
            del self._kept[next(iter(self._kept))]
        return self._keys, program

    def _put(self, msg: Any) -> None:
        """Send a job; while the jobs pipe is full, take the answers waiting (several jobs may be
        queued: the process, blocked writing an answer nobody reads, would never read the rest)."""
        view = _frame(msg)
        try:
            while view:
                try:
                    view = view[os.write(self._jobs, view):]
                    continue
                except BlockingIOError:
                    pass
                r, _, _ = select.select([self._answers], [self._jobs], [], 0.25)
                if r:
                    self._ready.append(self._take())
                elif not self._still_running():
                    raise JudgeDied("the judge process ended")
        except (BrokenPipeError, OSError) as e:
            self.close()
            raise JudgeDied(f"the judge process ended ({e})") from None

    def _take(self) -> Any:
        try:
            return self._inbox.take()
        except EOFError:
            self.close()
            raise JudgeDied("the judge process ended without answering") from None

    def submit(self, program: Program, run: RunResult) -> None:
        """Judge ``run`` there; ``result()`` gives the judgements in the order of the submits."""
        self._outcomes.append(getattr(run, "outcomes", None))     # a run of several targets has none
        self._put(("run", *self._program(program), run))

    def result(self) -> Any:
        """The judgement of the oldest job not yet taken (raising what the judge raised); waits for
        it, taking Ctrl-C."""
        if not self._outcomes:
            raise RuntimeError("no judgement was asked for")
        outcomes = self._outcomes.popleft()
        if self._ready:
            kind, value = self._ready.popleft()
        elif self._inbox.ready():           # read with an earlier answer
            kind, value = self._take()
        else:
            while True:
                r, _, _ = select.select([self._answers], [], [], 0.25)
                if r:
                    break
                if not self._still_running():
                    raise JudgeDied("the judge process ended without answering")
            kind, value = self._take()
        if kind == "error":
            raise value
        return _attached(value, outcomes)

    def _still_running(self) -> bool:
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return pid == 0

    def judge_stream(self, program: Program, stream: Any, batch: int = BATCH) -> Any:
        """Forward ``stream`` (a target's run still going) to the judge process as its outcomes
        arrive and return the judgement; the run is finished when this returns (``stream.finish()``).

        ``stream`` may also be a function that starts the run and returns its stream
        (``lambda: target.stream(program)``): the job is then sent first, and the judge's process
        makes its model while the target starts.  The first batches are small (8 outcomes, then
        twice as many each time up to ``batch``), so judging starts as soon as the run does."""
        if self._outcomes:
            raise RuntimeError("judge_stream with judgements still to be taken")
        self._put(("stream", *self._program(program)))
        if not hasattr(stream, "outcome"):
            try:
                stream = stream()
            except BaseException as e:
                # the job sent is ended (its judgement dropped), so the process waits for the next
                self._outcomes.append(())
                try:
                    self._put(("end", RunStatus.ERROR, f"the run did not start: {e}"))
                    self.result()
                except Exception:   # noqa: BLE001 -- the run's own exception is the one to see
                    pass
                raise
        n, sent_o, sent_b = len(program.calls), 0, 0
        outcomes, observations = stream.outcomes, stream.observations
        want, size = 0, min(8, batch)
        while want < n:
            want = min(want + size, n)
            size = min(size * 2, batch)
            if stream.outcome(want - 1) is None:
                break
            if len(outcomes) > sent_o or len(observations) > sent_b:
                self._put(("more", outcomes[sent_o:], observations[sent_b:]))
                sent_o, sent_b = len(outcomes), len(observations)
        final = stream.finish()
        if len(final.outcomes) > sent_o or len(final.observations) > sent_b:
            self._put(("more", list(final.outcomes[sent_o:]), list(final.observations[sent_b:])))
        self._outcomes.append(final.outcomes)
        self._put(("end", final.status, final.message))
        return self.result()

    def close(self) -> None:
        """End the process: its jobs pipe closed, then its group killed and reaped."""
        for fd in (self._jobs, self._answers):
            try:
                os.close(fd)
            except OSError:
                pass
        self._jobs = self._answers = -1
        kill_group(self.pid)
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass

    stop = close        # RunAhead's name for it

    def __enter__(self) -> "JudgeProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["JudgeProcess", "JudgeDied", "BATCH"]
