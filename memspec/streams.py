"""A run read while it goes: the reading a judge does of a target's ``stream``.

``judge`` reads a run call by call: ``outcome(i)`` (None once the run ended before call i),
``observation(i)`` (the checkpoint after call i, which comes after its outcome and before call
i + 1's) and ``finish()`` (the whole ``RunResult``).  ``RunReader`` gives those three over the
``outcomes`` and ``observations`` a subclass's ``_more`` adds to, a piece at a time, until it
sets ``result``: an in-process target's run loop (targets.base.Stepwise), or a run forwarded to
the judge's process (fuzz/judge_process.py).
"""

from __future__ import annotations

from memspec.records import Observation, Outcome, RunResult


class RunReader:
    """``outcome``, ``observation`` and ``finish`` over what ``_more`` adds (see the module doc)."""

    def __init__(self, outcomes: list[Outcome] | None = None,
                 observations: list[tuple[int, Observation]] | None = None) -> None:
        self.outcomes: list[Outcome] = [] if outcomes is None else outcomes
        self.observations: list[tuple[int, Observation]] = [] if observations is None else observations
        self.seen_at: dict[int, Observation] = {}
        self._seen = 0          # observations[:_seen] are in seen_at
        self.result: RunResult | None = None

    def _more(self) -> None:
        """Add the next piece of the run to ``outcomes``/``observations``, or set ``result``."""
        raise NotImplementedError

    def outcome(self, index: int) -> Outcome | None:
        outcomes = self.outcomes
        if index < len(outcomes):       # the judge is behind the run: the common case
            return outcomes[index]
        while len(outcomes) <= index and self.result is None:
            self._more()
        return outcomes[index] if index < len(outcomes) else None

    def observation(self, index: int) -> Observation | None:
        obs = self.observations
        if index + 1 < len(self.outcomes) and self._seen == len(obs):
            return self.seen_at.get(index)      # call index + 1 has come, and nothing since was seen
        while len(self.outcomes) <= index + 1 and self.result is None:
            self._more()
        for k in range(self._seen, len(obs)):
            self.seen_at.setdefault(obs[k][0], obs[k][1])
        self._seen = len(obs)
        return self.seen_at.get(index)

    def finish(self) -> RunResult:
        while self.result is None:
            self._more()
        return self.result


__all__ = ["RunReader"]
