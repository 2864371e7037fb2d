"""The CLI's view of the layers above the core (imported only by the CLI wiring)."""

from memspec.fuzz.differential import Signature, confirm, execute, localise, shrink_failure  # noqa: F401
from memspec.specs.catalogue import all_clauses as catalogue  # noqa: F401
from memspec.targets.registry import make_target  # noqa: F401
