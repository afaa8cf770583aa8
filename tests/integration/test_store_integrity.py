"""A run never reports succeeded with an output or an input whose bytes do not match its name.

Corruption is real: bytes flipped in committed objects on disk (after a run, or by a step
while the run goes on), and a worker that really lacks the permission to write the store.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_s3 import moto_s3, posix_or_s3

from reliability import Pipeline, Retry, StepContext
from reliability.cli.main import main
from reliability.pipeline import StepHook, StepSpec
from reliability.runner import Runner
from reliability.runner.store import ObjectStore, Store

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    with moto_s3() as options:
        yield options


@pytest.fixture(params=["posix", "s3"])
def store(request: pytest.FixtureRequest, home: Path) -> Store:
    """The run's artifact store: HOME/store, or a bucket on a real S3 server."""
    return posix_or_s3(request, home / "store")


def _read(store: Store, digest: str) -> bytes:
    if isinstance(store, ObjectStore):
        return bytes(store.fs.cat_file(store.location(digest).split("://", 1)[1]))
    return store.path(digest).read_bytes()


def _damage(store: Store, digest: str, at: int = 100) -> bytes:
    """Flip one byte of a committed object in place; return its good bytes."""
    good = _read(store, digest)
    bad = bytearray(good)
    bad[at] ^= 0xFF
    if isinstance(store, ObjectStore):
        store.fs.pipe_file(store.location(digest).split("://", 1)[1], bytes(bad))
    else:
        store.path(digest).write_bytes(bytes(bad))
    return good

flow = Pipeline("integrity")


@flow.step(retry=Retry(attempts=3, backoff=0))
def raw() -> bytes:
    return bytes(range(256)) * 64


@flow.step(retry=Retry(attempts=3, backoff=0))
def total(raw: bytes) -> int:
    return sum(raw)


@flow.step(retry=Retry(attempts=3, backoff=0))
def digest(raw: bytes, total: int) -> str:
    return f"{hashlib.sha256(raw).hexdigest()}:{total}"


def _flip(path: Path, at: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_the_next_run_does_not_trust_a_corrupt_object(home: Path, store: Store) -> None:
    runner = Runner(flow, home=home, workers=2, store=store)
    clean = runner.run(run_id="clean")
    assert clean.ok
    good = _damage(store, clean.outputs["raw"])  # bit rot after a successful run
    again = runner.run(run_id="again")
    assert again.ok, again.failed
    assert again.outputs == clean.outputs  # the same bytes as a clean run, not the rot
    assert _read(store, clean.outputs["raw"]) == good
    for h in again.outputs.values():
        assert runner.store.verify(h)
    assert store.repaired == [clean.outputs["raw"]]  # the rot was kept aside, replaced


def test_resume_of_a_succeeded_run_repairs_a_corrupt_output(home: Path, store: Store
                                                            ) -> None:
    runner = Runner(flow, home=home, workers=2, store=store)
    first = runner.run(run_id="r1")
    _damage(store, first.outputs["total"], at=0)
    again = runner.resume("r1")
    assert again.ok and again.outputs == first.outputs
    assert all(runner.store.verify(h) for h in again.outputs.values())
    assert [a["status"] for a in runner.ledger.attempts("r1", "total")] == [
        "succeeded", "succeeded"]  # redone, not trusted
    assert [a["status"] for a in runner.ledger.attempts("r1", "digest")] == ["succeeded"]
    lost = runner.ledger.events("r1", "output_lost")
    assert [e["step"] for e in lost] == ["total"]


poisoned = Pipeline("poisoned")


@poisoned.step
def blob() -> bytes:
    return b"\x01" * 4096


@poisoned.step
def rot(ctx: StepContext, blob: bytes) -> int:
    """Damages the committed object of ``blob`` on disk while the run goes on."""
    target = ctx.input_files["blob"]
    if target.read_bytes() == blob:
        damage = os.environ.get("INTEGRITY_TEST_DAMAGE")
        if damage:  # an object store: damage the object itself, not the local copy
            import fsspec

            d = target.name
            fs, path = fsspec.core.url_to_fs(f"{damage}/objects/{d[:2]}/{d}",
                                             **json.loads(os.environ["INTEGRITY_TEST_S3"]))
            fs.pipe_file(path, b"\x00" + blob[1:])
        else:
            _flip(target)
    return len(blob)


@poisoned.step(retry=Retry(attempts=3, backoff=0), after=("rot",))
def consume(blob: bytes) -> int:
    return sum(blob)


def test_a_step_never_consumes_a_corrupt_input(home: Path, store: Store,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if isinstance(store, ObjectStore):
        monkeypatch.setenv("INTEGRITY_TEST_DAMAGE", store.url)
        monkeypatch.setenv("INTEGRITY_TEST_S3", json.dumps(store.options))
    runner = Runner(poisoned, home=home, workers=1, store=store)
    res = runner.run(run_id="p1")
    assert res.status == "failed" and "consume" in res.failed
    assert "CorruptObject" in res.failed["consume"]
    assert res.outputs.keys() == {"blob", "rot"}
    tries = runner.ledger.attempts("p1", "consume")
    assert [(a["status"], a["error_type"]) for a in tries] == [("failed", "CorruptObject")]
    assert "reliability resume" in tries[0]["error"]  # says how to recover
    # recomputing the damaged input finishes the run with the true bytes
    fixed = runner.resume("p1")
    assert fixed.ok, fixed.failed
    assert runner.store.load(fixed.outputs["consume"], "json") == 4096
    assert runner.store.load(fixed.outputs["blob"], "bytes") == b"\x01" * 4096


def test_verify_command_finds_quarantines_and_resume_repairs(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runner = Runner(flow, home=home, workers=2)
    res = runner.run(run_id="v1")
    assert main(["verify", "--home", str(home)]) == 0
    assert "3 objects intact" in capsys.readouterr().out
    _flip(runner.store.path(res.outputs["raw"]))
    runner.store.path(res.outputs["digest"]).unlink()
    assert main(["verify", "--home", str(home)]) == 1
    out = capsys.readouterr().out
    assert f"corrupt  {res.outputs['raw']}" in out and "v1:raw" in out
    assert f"missing  {res.outputs['digest']}" in out and "v1:digest" in out
    assert "reliability resume v1" in out
    assert not runner.store.has(res.outputs["raw"])  # quarantined
    assert len(list((home / "store" / "quarantine" / "corrupt").iterdir())) == 1
    assert main(["resume", "--home", str(home), "--pipeline",
                 "tests.integration.test_store_integrity:flow", "-q", "v1"]) == 0
    capsys.readouterr()
    assert main(["verify", "--home", str(home), "--json"]) == 0
    assert '"ok": true' in capsys.readouterr().out


class DropPrivileges(StepHook):
    """Runs the step as ``nobody``: the worker really cannot write the root-owned store."""

    name = "drop-privileges"

    def before(self, ctx: StepContext, spec: StepSpec, inputs: dict[str, Any]
               ) -> dict[str, Any]:
        if os.getuid() == 0:
            os.setgid(65534)
            os.setuid(65534)
        return inputs


def test_an_unwritable_store_fails_fast_with_the_fix(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(tmp_path, 0o755)  # the worker may look, not write
    hooks: list[StepHook] = []
    if os.getuid() == 0:  # root writes anywhere: run the step as nobody
        hooks.append(DropPrivileges())
    runner = Runner(flow, home=home, workers=1, hooks=hooks)
    if os.getuid() != 0:
        os.chmod(runner.store.root / "staging", 0o555)
    res = runner.run(run_id="ro")
    assert res.status == "failed"
    tries = runner.ledger.attempts("ro", "raw")
    assert [(a["status"], a["error_type"]) for a in tries] == [("failed", "StorageError")]
    assert "cannot write the step's output to the store" in tries[0]["error"]
    assert "Permission denied" in tries[0]["error"] and "Fix:" in tries[0]["error"]
