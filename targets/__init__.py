"""Adapters to the implementations under test.  Targets import only the core
(and the ``model`` target, the reference model itself); they never judge."""
