"""The one rule for a missing peer: CI (MEMSPEC_REQUIRE_PEERS=1) fails, a local run skips, both say why."""

from __future__ import annotations

import pytest

from ..conftest import missing_peer


def test_a_missing_peer_skips_locally_with_the_reason(monkeypatch) -> None:
    monkeypatch.delenv("MEMSPEC_REQUIRE_PEERS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="peer bochs is missing: apt-get install bochs"):
        missing_peer("bochs", "apt-get install bochs")


@pytest.mark.parametrize("value", ["1", "yes"])
def test_a_missing_peer_fails_where_peers_are_required(monkeypatch, value) -> None:
    monkeypatch.setenv("MEMSPEC_REQUIRE_PEERS", value)
    with pytest.raises(pytest.fail.Exception, match="peer kvm is missing: no /dev/kvm"):
        missing_peer("kvm", "no /dev/kvm")


def test_zero_means_not_required(monkeypatch) -> None:
    monkeypatch.setenv("MEMSPEC_REQUIRE_PEERS", "0")
    with pytest.raises(pytest.skip.Exception):
        missing_peer("kvm", "no /dev/kvm")
