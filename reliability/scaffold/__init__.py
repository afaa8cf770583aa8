"""``reliability init``: a working project from the templates in ``scaffold/project``.

Each ``*.tmpl`` file is copied with ``${pipeline}`` replaced by the pipeline's name, and
``__pipeline__`` in its path too; ``dot-NAME`` becomes ``.NAME``. The result runs as is:
``reliability run``, ``reliability contracts test``, ``pytest`` and ``reliability chaos run``.
"""

from __future__ import annotations

import keyword
import re
import string
from importlib import resources
from pathlib import Path

from reliability.errors import ConfigError

__all__ = ["TEMPLATES", "pipeline_name", "scaffold"]

TEMPLATES = Path(str(resources.files("reliability.scaffold") / "project"))
_SUFFIX = ".tmpl"


def pipeline_name(directory: Path) -> str:
    """A pipeline (and module) name from a directory name: ``My Shop`` -> ``my_shop``."""
    name = re.sub(r"[^a-z0-9]+", "_", directory.resolve().name.lower()).strip("_")
    if not name or name[0].isdigit() or keyword.iskeyword(name):
        name = f"pipeline_{name}" if name else "example"
    return name


def _check_name(name: str) -> None:
    if not name.isidentifier() or not name.isascii() or keyword.iskeyword(name):
        raise ConfigError(f"pipeline name {name!r} is not a Python identifier (it names the "
                          "module pipelines/NAME.py)", path=("--name",),
                          fix="use lowercase letters, digits and '_', e.g. orders")


def _target(dest: Path, template: Path, name: str) -> Path:
    rel = template.relative_to(TEMPLATES).as_posix().removesuffix(_SUFFIX)
    rel = rel.replace("__pipeline__", name)
    parts = [p.replace("dot-", ".", 1) if p.startswith("dot-") else p for p in rel.split("/")]
    return dest.joinpath(*parts)


def scaffold(dest: str | Path, name: str | None = None) -> list[Path]:
    """Write a new project into ``dest``; refuse to overwrite any file. Returns the paths."""
    root = Path(dest)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} is a file, not a directory", path=("DIR",),
                          fix="pass a new or empty directory")
    name = name or pipeline_name(root)
    _check_name(name)
    templates = sorted(p for p in TEMPLATES.rglob(f"*{_SUFFIX}") if p.is_file())
    plan = {_target(root, t, name): t for t in templates}
    clash = sorted(str(p) for p in plan if p.exists())
    if clash:
        raise ConfigError(f"would overwrite {', '.join(clash)}", path=("DIR",),
                          fix="run `reliability init` in a new or empty directory")
    for path, template in plan.items():
        text = string.Template(template.read_text(encoding="utf-8"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.substitute(pipeline=name), encoding="utf-8")
    return list(plan)
