"""Chaos specs: rollbacks are held to the blast radius, a shared proxy server is never reset,
mutation names are checked against the contracts when the file is validated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reliability.chaos.experiment import check_experiment, load_experiment
from reliability.cli.main import main
from reliability.errors import BlastRadiusError

ROOT = Path(__file__).resolve().parents[2]


def _spec(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "title": "rollbacks", "target": {"services": [
            {"name": "svc", "upstream": "127.0.0.1:9"},
            {"name": "other", "upstream": "127.0.0.1:9"}]},
        "method": [{"type": "network", "proxy": "svc", "toxic": "latency"}],
        "blast_radius": {"proxies": ["svc"]},
    }
    spec.update(over)
    return spec


def test_a_rollback_on_a_proxy_outside_the_blast_radius_is_refused() -> None:
    spec, _ = load_experiment(_spec(rollbacks=[{"type": "remove_toxics", "proxy": "svc"},
                                               {"type": "enable_proxy", "proxy": "other"}]))
    with pytest.raises(BlastRadiusError, match=r"rollbacks\[1\]\.proxy='other'") as err:
        check_experiment(spec, None)
    assert "blast_radius.proxies" in str(err.value)


def test_reset_proxy_is_refused_on_a_shared_proxy_server() -> None:
    target = {"proxy_api": "http://127.0.0.1:8474",
              "services": [{"name": "svc", "upstream": "127.0.0.1:9"}]}
    spec, _ = load_experiment(_spec(target=target, rollbacks=[{"type": "reset_proxy"}]))
    with pytest.raises(BlastRadiusError, match=r"rollbacks\[0\] \(reset_proxy\)") as err:
        check_experiment(spec, None)
    assert "remove_toxics" in str(err.value) and "enable_proxy" in str(err.value)
    # the experiment's own embedded server holds nothing else: reset is allowed there
    own, _ = load_experiment(_spec(rollbacks=[{"type": "reset_proxy"}]))
    check_experiment(own, None)


def test_validate_checks_mutation_names_against_the_contracts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)  # the reference project, with its contracts
    exp = tmp_path / "bad-mutation.yaml"
    exp.write_text("title: t\nmethod:\n"
                   "  - {type: exception, step: ingest, name: boom}\n"
                   "  - {type: data, step: ingest, name: m, mutation: nosuch}\n")
    assert main(["chaos", "validate", str(exp)]) == 2
    err = capsys.readouterr().err
    assert f"{exp}: method[1].mutation:" in err
    assert "no mutation 'nosuch'" in err and "use one of [" in err
    good = tmp_path / "good-mutation.yaml"
    good.write_text("title: t\nmethod:\n"
                    "  - {type: data, step: ingest, mutation: 'null:alcohol'}\n")
    assert main(["chaos", "validate", str(good)]) == 0
