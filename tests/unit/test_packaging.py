from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import types
from pathlib import Path

import reliability
from reliability import errors

ROOT = Path(__file__).parents[2]


def test_all_is_sorted_and_complete() -> None:
    assert reliability.__all__ == sorted(reliability.__all__)
    public = {n for n, v in vars(reliability).items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType)
              and n != "annotations"}
    assert public <= set(reliability.__all__)
    for name in reliability.__all__:
        assert hasattr(reliability, name)


def test_every_error_derives_from_the_root() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.ReliabilityError), name
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.BlastRadiusError, PermissionError)


def test_distribution_metadata_and_entry_points() -> None:
    dist = importlib.metadata.distribution("pipeline-reliability")
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    assert scripts["reliability"] == "reliability.cli.main:main"
    plugins = {ep.name: ep.value for ep in dist.entry_points if ep.group == "pytest11"}
    assert plugins["reliability"] == "reliability.pytest_plugin"
    assert plugins["reliability-chaos"] == "reliability.chaos.pytest_plugin"
    assert (Path(reliability.__file__).parent / "py.typed").exists()


def test_import_is_light() -> None:
    code = ("import sys, reliability; heavy = [m for m in ('pandas', 'pandera', 'polars', "
            "'prometheus_client', 'jinja2', 'apscheduler', 'sklearn', 'rich') "
            "if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == ""


def test_asset_folders_hold_no_python() -> None:
    for folder in ("contracts", "chaos", "runbooks"):
        assert not list((ROOT / folder).rglob("*.py")), folder
