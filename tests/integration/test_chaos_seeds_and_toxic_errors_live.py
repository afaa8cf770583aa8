"""The chaos layer against real servers and processes: the same seed gives the same journal
with a network fault, toxic-create errors come in Toxiproxy's order, and the pytest fixture
keeps an experiment's own seed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import requests

from reliability import Pipeline, Retry
from reliability.chaos.proxy import ProxyServer
from reliability.chaos.runner import run_experiment

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

tiny = Pipeline("seeded_tiny")


@tiny.step(retry=Retry(attempts=2, backoff=0), timeout=20)
def numbers() -> list[int]:
    return [1, 2, 3]


@tiny.step(retry=Retry(attempts=2, backoff=0), timeout=20)
def doubled(numbers: list[int]) -> list[int]:
    return [2 * n for n in numbers]


def test_same_seed_with_a_network_fault_gives_the_same_journal(tmp_path: Path) -> None:
    spec: dict[str, Any] = {
        "title": "replay with a toxic", "seed": 9,
        "target": {"services": [{"name": "svc",
                                 "start": "pipelines.wine_service:WineService"}]},
        "method": [{"type": "network", "name": "lag", "proxy": "svc", "toxic": "latency",
                    "attributes": {"latency": 5}}],
    }
    first = run_experiment(spec, pipeline=tiny, home=tmp_path / "a")
    second = run_experiment(spec, pipeline=tiny, home=tmp_path / "b")
    assert first.status == second.status == "passed"
    assert first.data["experiment_id"] != second.data["experiment_id"]
    assert any(r["toxic"] for r in first.data["rollbacks"])
    assert first.normalized() == second.normalized()


def test_toxic_create_errors_match_toxiproxy_order() -> None:
    with ProxyServer(port=0) as server:
        proxy = server.client().create(upstream="127.0.0.1:9", name="svc")
        proxy.add_toxic(name="lag", type="latency", attributes={"latency": 5})
        url = f"{server.url}/proxies/svc/toxics"
        no_type = requests.post(url, json={"attributes": {"latency": 5}}, timeout=5)
        assert (no_type.status_code, no_type.json()) == (
            400, {"error": "invalid toxic type", "status": 400})
        dup = requests.post(url, json={"name": "lag", "type": "latency",
                                       "attributes": {"latency": "slow"}}, timeout=5)
        assert (dup.status_code, dup.json()) == (
            409, {"error": "toxic already exists", "status": 409})


PLUGIN_TEST = '''
import reliability.chaos.runner as runner_mod
import pytest

seen = []

@pytest.fixture(autouse=True)
def capture(monkeypatch):
    monkeypatch.setattr(runner_mod, "run_experiment", lambda source, **kw: seen.append(kw))

def test_keeps_the_experiment_seed(chaos_experiment):
    chaos_experiment("x.yaml")
    assert "seed" not in seen[-1]

@pytest.mark.chaos(seed=4)
def test_marker_seed_overrides(chaos_experiment):
    chaos_experiment("x.yaml")
    assert seen[-1]["seed"] == 4
'''


def test_chaos_experiment_fixture_keeps_the_experiments_own_seed(tmp_path: Path) -> None:
    (tmp_path / "test_seed.py").write_text(textwrap.dedent(PLUGIN_TEST))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
         "--chaos", str(tmp_path / "test_seed.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout
