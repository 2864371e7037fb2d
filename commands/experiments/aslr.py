"""``memspec experiment aslr``: observed randomisation of exec'd processes vs the configuration.

Samples N freshly exec'd processes with randomisation on, and N with
personality(ADDR_NO_RANDOMIZE), and judges each region's base against what
/proc/sys/kernel/randomize_va_space and /proc/sys/vm/mmap_rnd_bits promise
(model/aslr.py), printing observed bits next to configured ones with the test's
false-alarm probability.  Writes aslr.json.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict

from memspec.model.aslr import AslrConfig, judge_layouts
from memspec.targets.aslr import config, sample_layouts

from memspec.specs.catalogue import get


def run(out_dir: str, samples: int = 64) -> dict:
    cfg = config()
    results = {}
    print(f"ASLR on this kernel: randomize_va_space={cfg['randomize_va_space']}, "
          f"mmap_rnd_bits={cfg['mmap_rnd_bits']}; {samples} exec'd processes per mode\n")
    print(f"{'mode':14s} {'region':7s} {'configured':>10s} {'observed':>8s} {'verdict':8s} {'false alarm':>11s}  clause")
    for mode, no_rand in (("randomised", False), ("no-randomize", True)):
        c = AslrConfig(cfg["randomize_va_space"], cfg["mmap_rnd_bits"], no_rand)
        verdicts = judge_layouts(c, sample_layouts(samples, no_rand))
        results[mode] = [asdict(v) for v in verdicts]
        for v in verdicts:
            print(f"{mode:14s} {v.region:7s} {v.configured_bits:>10d} {v.observed_bits:>8d} "
                  f"{'pass' if v.ok else 'FAIL':8s} {v.false_alarm:>11.1e}  {v.clause}: {v.detail}")
    print(f"\n{get('linux.aslr.mmap-base-bits').statement}")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "aslr.json")
    with open(path, "w") as f:
        json.dump({"config": cfg, "samples": samples, "results": results}, f, indent=2)
    print(f"written: {path}")
    return results
