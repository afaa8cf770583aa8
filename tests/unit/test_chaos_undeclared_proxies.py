"""Experiment checks: an undeclared proxy is a mistake in the file, not a blast-radius refusal."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from sample_pipelines import chain

from reliability.chaos.experiment import check_experiment, load_experiment
from reliability.errors import BlastRadiusError, ConfigError


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def _check(path: Path) -> None:
    spec, file = load_experiment(path)
    check_experiment(spec, chain, file=file, env="local")


def test_an_undeclared_proxy_names_the_file_the_key_and_the_declaration(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        title: t
        target:
          services: [{name: wine, upstream: "127.0.0.1:9"}]
        method:
          - {type: exception, step: source}
          - {type: network, proxy: wnie, toxic: latency, attributes: {latency: 5}}
        """)
    with pytest.raises(ConfigError) as info:
        _check(path)
    err = info.value
    assert not isinstance(err, BlastRadiusError)
    assert err.file == str(path) and err.key_path == "method[1].proxy"
    assert "'wnie' is not a service of the target" in str(err)
    assert err.fix is not None and "target.services" in err.fix and "'wine'" in err.fix


def test_with_no_services_the_fix_is_to_declare_one(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        title: t
        method: [{type: network, proxy: db, toxic: down}]
        """)
    with pytest.raises(ConfigError, match=r"declare it under target\.services") as info:
        _check(path)
    assert str(path) in str(info.value) and info.value.key_path == "method[0].proxy"


def test_a_declared_proxy_outside_the_blast_radius_is_still_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        title: t
        target:
          services:
            - {name: wine, upstream: "127.0.0.1:9"}
            - {name: db, upstream: "127.0.0.1:8"}
        method: [{type: network, proxy: db, toxic: down}]
        blast_radius: {proxies: [wine]}
        """)
    with pytest.raises(BlastRadiusError, match="proxy 'db', outside the blast radius"):
        _check(path)


def test_a_proxy_of_an_existing_server_is_judged_by_the_blast_radius(tmp_path: Path) -> None:
    # proxies of a server named by target.proxy_api are not declared in the experiment
    path = _write(tmp_path, """
        title: t
        target: {proxy_api: "http://127.0.0.1:8474"}
        method: [{type: network, proxy: db, toxic: down}]
        """)
    with pytest.raises(BlastRadiusError, match=r"add it to blast_radius\.proxies"):
        _check(path)
    allowed = path.read_text() + "blast_radius: {proxies: [db]}\n"
    path.write_text(allowed)
    _check(path)
