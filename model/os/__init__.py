"""The os layer's model, one module per concern, in a package so that they read as one part.

``state`` holds the state and the mechanics every rule shares; each other module holds the
rules of one family of calls and exports them in one table, ``RULES`` (see ``model.rules``).
``memspec.model.mm`` composes them into ``System``.  The fault path (``model.fault``),
pressure (``model.pressure``) and the invariants (``model.invariants``) stay beside the other
layers' models and import ``state`` at the top level: the imports run one way, state <-
invariants <- pressure <- fault <- the rule families <- mm, with no cycle
(tests/core/test_layering.py checks it).  This file imports nothing, so importing ``state``
never pulls the rules in.
"""
