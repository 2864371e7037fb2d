"""The clause catalogue, the judge, invariants and the Hypothesis state machines."""
