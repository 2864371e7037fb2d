"""The failure a state machine raises: a conformance failure that explains itself."""

from __future__ import annotations

from memspec.program import Program, format_program

from .catalogue import get as clause


class ConformanceFailure(AssertionError):
    """A target disagreed with the model; carries the clause and the program that shows it."""

    def __init__(self, clause_id: str, program: Program, index: int, expected: str, observed: str, note_: str):
        self.clause = clause_id
        self.program = program
        self.index = index
        self.expected = expected
        self.observed = observed
        c = clause(clause_id)
        super().__init__(
            f"{clause_id}: {c.statement}\n  [{c.citation}]\n"
            f"at call {index + 1}: expected {expected}, observed {observed}\n  {note_}\n\n"
            f"{format_program(program)}"
            "replay: save the program above to a file and run `memspec replay FILE --target T`")
