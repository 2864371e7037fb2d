"""The run a reproducer is written from, replayed through the model call by call: what each call
was allowed to do, whether the target's outcome diverged, and the clause (with its statement and
citation) the verdict names.  The C, test-kernel and /dev/kvm reproducers are all written from
these steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from memspec.program import Call, Program, bind_result, eval_args
from memspec.records import Outcome, RunResult


@dataclass
class Step:
    index: int
    call: Call
    args: tuple[Any, ...]        # the call's arguments as the model evaluated them
    outcome: Outcome             # what the target did
    expect: Any                  # the model's Expect for the call, in the state before it
    diverges: bool
    clause_id: str               # the verdict's clause: the blamed one where the outcome diverges
    clause: Any                  # its catalogue entry (statement, citation)


def model_replay(program: Program, run: RunResult, facts: dict[str, Any], *, past_divergence: bool = False,
                 env: dict[str, int] | None = None, after: Any = None) -> Iterator[Step]:
    """Each call the target answered, judged by a fresh model of the program's layer that then
    adopts the target's outcome.  The replay ends at the first divergence, or, with
    ``past_divergence``, goes on as far as the model can take what the target did (it ends at the
    first outcome the model cannot adopt).  ``env`` (if given) receives the values the calls
    bound, those the model adopted.  ``after`` (if given) is called with the call's index and the
    model once the model has adopted that call's outcome (the state a checkpoint after it compares)."""
    from memspec.model.registry import new_model
    from memspec.specs.catalogue import get as clause_of
    model = new_model(program.layer, facts)
    env = {} if env is None else env
    for i, call in enumerate(program.calls):
        if i >= len(run.outcomes):
            return
        args = eval_args(call, env)
        o = run.outcomes[i]
        exp = model.expect(call.proc or "main", call.name, args)
        why = exp.judge(o)
        cid = exp.blame(o) if why is not None else exp.clause
        yield Step(i, call, args, o, exp, why is not None, cid, clause_of(cid))
        if why is not None and not past_divergence:
            return
        try:
            model.apply(call.proc or "main", call.name, args, o)
            model.bind(call.proc or "main", call.name, call.result, o)
        except Exception:
            if past_divergence:      # the model cannot take that outcome: the replay stops here
                return
            raise
        bind_result(env, call, o.value)
        if after is not None:
            after(i, model)
