"""The CLI's view of the report writers (imported only by the CLI wiring)."""

from memspec.reports.atomic import write_text  # noqa: F401
from memspec.reports.results import ClauseStats, Failure, RunResults, TargetResults  # noqa: F401
