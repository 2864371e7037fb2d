"""The reference model: pure Python, no I/O, no knowledge of targets or the harness.

Each layer's model computes, for a call, the *set* of outcomes the specification
allows (``Expect``), then adopts the outcome observed (if allowed) and moves on.
Every rule names the clause it implements; the clause catalogue lives in the specs package.
"""
