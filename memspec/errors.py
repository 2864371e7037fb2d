"""The two kinds of error memspec raises.

Faults and errno are *values* (see ``memspec.records``).  Exceptions mean one of:
a user mistake (``UsageError`` and its subclasses, exit code 2, with a message that
says what to do) or a bug in memspec itself (anything else).
"""

from __future__ import annotations


class UsageError(Exception):
    """The user asked for something memspec cannot do; the message says what to do."""


class ProgramError(UsageError):
    """A program text is malformed or invalid.  Carries line and column (1-based)."""

    def __init__(self, message: str, line: int = 0, col: int = 0, source: str = "<program>"):
        self.message = message
        self.line = line
        self.col = col
        self.source = source
        where = f"{source}:{line}:{col}: " if line else f"{source}: "
        super().__init__(where + message)


class TargetError(Exception):
    """A target could not be started or spoke nonsense: a harness-level verdict, not a conformance failure."""


class SessionFailed(Exception):
    """A live target crashed, hung, refused or spoke nonsense; carries the run status."""

    def __init__(self, status: "object", message: str):
        super().__init__(message)
        self.status = status      # a memspec.records.RunStatus
        self.message = message


class Terminated(KeyboardInterrupt):
    """SIGTERM (as CI runners and ``timeout`` send it), treated like Ctrl-C: the run stops, every
    child process group is ended, the partial report is written; the exit code is 143."""
