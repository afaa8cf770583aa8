"""Contract tests run on recorded step outputs: with the upstream data service down they
still pass, and they write nothing into the project's working tree (or the temp dir)."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import subprocess_env

from pipelines.wine_service import WineService

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _tree(root: Path) -> dict[str, str]:
    """Every file and directory under ``root``: content hash (files) or 'dir'."""
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def test_contract_tests_pass_offline_and_leave_nothing_behind(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "contracts" / "reference", project / "contracts" / "reference",
                    ignore=shutil.ignore_patterns("snapshot"))
    (project / "reliability.yaml").write_text("pipeline: pipelines.reference:pipeline\n")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = subprocess_env(PYTHONPATH=str(ROOT), TMPDIR=str(temp))
    env.pop("RELIABILITY_HOME", None)
    cli = [sys.executable, "-m", "reliability"]

    with WineService() as service:  # the upstream is up while the good run is recorded
        url, port = service.url, service.port
        rec = _run([*cli, "contracts", "snapshot", "-p", f"source={url}"], project, env)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    manifest = json.loads((project / "contracts/reference/snapshot/manifest.json").read_text())
    assert manifest["params"]["source"] == url
    assert set(manifest["steps"]) == {"ingest", "validate", "featurize", "train", "evaluate",
                                      "package"}
    size = sum(f.stat().st_size for f in (project / "contracts/reference/snapshot").iterdir())
    assert size < 200_000  # small enough to commit
    with pytest.raises(ConnectionRefusedError), socket.create_connection(
            ("127.0.0.1", port), timeout=2):
        pass  # the upstream is down from here on
    before = _tree(project)

    test = _run([*cli, "contracts", "test", "--max-examples", "5"], project, env)
    assert test.returncode == 0, test.stdout + test.stderr
    assert "0 failed" in test.stdout and "Connection refused" not in test.stdout
    assert "recorded inputs" in test.stdout

    plugin = _run([sys.executable, "-m", "pytest", "--reliability-contracts",
                   "--reliability-max-examples=5", "-p", "no:randomly", "-p",
                   "no:cacheprovider", "-p", "no:benchmark", "-q"], project, env)
    assert plugin.returncode == 0, plugin.stdout + plugin.stderr
    assert "overall:" in plugin.stdout and "(100%)" in plugin.stdout

    assert _tree(project) == before  # nothing written into the working tree
    assert list(temp.iterdir()) == []  # and every temporary directory removed
