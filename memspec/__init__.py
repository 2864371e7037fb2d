"""memspec: a property-based conformance and fuzzing harness for memory management."""

__version__ = "0.1.0"
