"""The Hypothesis example database over Redis (``memspec check --db redis://...``), against a
real redis-server: one database shared by several runners, as docs/ci.md shows.

Each test session starts its own redis-server on a free local port, with no persistence,
and stops it.  Without the redis-server program (Debian: redis-server, which tools/test.sh
installs) the tests skip with that reason.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memspec.commands.check import example_database

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None,
                                reason="redis-server is not installed (Debian: apt-get install redis-server)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("redis", reason="the redis package is not installed: pip install -e '.[redis]'")
    import redis
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder), "--daemonize", "no"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        for _ in range(100):
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited {proc.returncode}: {proc.stdout.read().decode()[-2000:]}")
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail("redis-server did not answer PING within 5 s")
        yield url
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def redis_client(redis_url: str):
    import redis
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


def test_two_runners_see_one_database(redis_url: str, redis_client) -> None:
    from hypothesis.extra.redis import RedisExampleDatabase
    a, b = example_database(redis_url), example_database(redis_url)
    assert isinstance(a, RedisExampleDatabase) and a is not b
    a.save(b"key", b"failing example 1")
    a.save(b"key", b"failing example 2")
    assert set(b.fetch(b"key")) == {b"failing example 1", b"failing example 2"}
    b.move(b"key", b"other", b"failing example 1")
    assert set(a.fetch(b"key")) == {b"failing example 2"} and set(a.fetch(b"other")) == {b"failing example 1"}
    b.delete(b"key", b"failing example 2")
    assert list(a.fetch(b"key")) == []
    assert redis_client.dbsize() > 0          # it is the server that holds them, not the process


def test_the_environment_variable_names_the_database(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from hypothesis.extra.redis import RedisExampleDatabase
    monkeypatch.setenv("MEMSPEC_HYPOTHESIS_DB", redis_url)
    assert isinstance(example_database(None), RedisExampleDatabase)


# The model, except that calloc(nmemb, size) crashes for nmemb in 30..44: a bug the phys state
# machine finds only when it happens to draw such an nmemb (the machine's rules grew, so one exact
# value became too rare for 300 examples), so one short run rarely meets it on its own.
RARE_BUG = '''
from memspec.records import Outcome
from memspec.targets.base import Session
from memspec.targets.model import ModelTarget


class CallocBand(Session):
    def __init__(self, inner):
        self.inner = inner

    def call(self, call, args):
        if call.name == "calloc" and 30 <= args[0] < 45:
            return Outcome(signal="SIGSEGV")
        return self.inner.call(call, args)

    def observe(self):
        return self.inner.observe()

    def close(self):
        self.inner.close()


class RareBugModel(ModelTarget):
    name = "rare-bug-model"

    def session(self, layer="phys"):
        return CallocBand(super().session(layer))
'''


def machine_result(tmp_path: Path, name: str, target: str, seed: int, examples: int, *db: str) -> str:
    """One CI runner: its own process, its own report folder; the database is all they share."""
    out = tmp_path / name
    p = subprocess.run([sys.executable, "-m", "memspec.commands.cli", "check", "-q", "--target", target, "--layer", "phys",
                        "--no-suite", "--programs", "0", "--seed", str(seed), "--machine-examples", str(examples),
                        "--confirm", "1", *db, "--out", str(out)], capture_output=True, text=True, timeout=600)
    (t,) = json.loads((out / "report.json").read_text())["targets"]
    assert p.returncode == (1 if t["machine"]["result"] == "fail" else 0), p.stdout + p.stderr
    return t["machine"]["result"]


@pytest.mark.slow   # two check runs against a redis server: ~25 s
def test_a_failure_one_runner_finds_is_replayed_first_by_another(tmp_path: Path, redis_url: str, redis_client) -> None:
    f = tmp_path / "rare_bug.py"
    f.write_text(RARE_BUG)
    target = f"py:{f}:RareBugModel()"
    # runner B alone, one example: it does not meet the bug
    assert machine_result(tmp_path, "b-alone", target, 7, 1) == "pass"
    # runner A searches long enough to find it, and saves the example in the shared database
    assert machine_result(tmp_path, "a", target, 0, 300, "--db", redis_url) == "fail"
    assert redis_client.dbsize() > 0
    # runner B again, one example, same database: the saved failure is replayed before anything new
    assert machine_result(tmp_path, "b-shared", target, 7, 1, "--db", redis_url) == "fail"
