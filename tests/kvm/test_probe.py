"""The feature probe: what this KVM offers, as facts the hw model reads and as a report list."""

from __future__ import annotations

import pytest

from memspec.errors import TargetError
from memspec.model.paging import DEFAULT_FACTS


def test_facts_cover_every_key_the_model_reads(kvm_facts):
    missing = [k for k in DEFAULT_FACTS if k not in kvm_facts]
    assert not missing, f"facts lack {missing}"
    assert 36 <= kvm_facts["maxphyaddr"] <= 52
    for k in ("la57", "page1g", "pcid", "invpcid", "smep", "smap", "pku", "nx"):
        assert isinstance(kvm_facts[k], bool), k


def test_unsupported_features_are_listed(kvm_target, kvm_facts):
    names = kvm_target.unsupported()
    assert all(isinstance(n, str) and n for n in names)
    # every feature the facts deny shows up in the list by name
    from memspec.targets.kvm import FEATURE_NAMES
    for key, label in FEATURE_NAMES.items():
        assert (label in names) == (not kvm_target.features[key]), key


def test_smep_and_smap_are_offered_once_cpuid_has_them(kvm_target):
    # KVM implements both but does not advertise them; the target sets the CPUID bits itself
    assert kvm_target.features["smep"] and kvm_target.features["smap"]


def test_missing_dev_kvm_says_why(monkeypatch):
    import memspec.targets.kvm as kvm
    monkeypatch.setattr(kvm, "kvm_status", lambda: "/dev/kvm cannot be opened: No such file or directory (ENOENT)")
    with pytest.raises(TargetError, match="not available: /dev/kvm cannot be opened"):
        kvm.KvmTarget()
