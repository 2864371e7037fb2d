"""The commands: the CLI (``memspec``), check, compare, fuzz, replay, bench, the experiments and
the pytest plugin.  They wire the layers below together -- targets, the model's judgement, the
fuzz codecs, the report writers -- and nothing imports them (docs/architecture.md)."""
