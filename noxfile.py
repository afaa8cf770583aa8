"""One venv per orchestrator, built with uv: the project plus the pinned orchestrator, then
that orchestrator's adapter tests (and, on request, its overhead benchmark).

    nox                      # every orchestrator session
    nox -s airflow           # one of them; add -r to reuse the venv between runs
    ADAPTER_BENCH=1 nox -s airflow    # and the wrapper's overhead benchmark in that venv

Airflow 3.3.2 and Prefect 3.9.1 cannot share a venv (their FastAPI pins clash). Airflow is
installed under ``constraints/airflow-3.3.2.txt``, frozen from a working install. With
``CI=true`` a session whose orchestrator is missing fails instead of skipping.
"""

from __future__ import annotations

import os
import time

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["airflow", "prefect", "dagster", "metaflow", "kfp", "zenml"]
nox.options.error_on_missing_interpreters = True

HOSTS: dict[str, dict[str, str]] = {
    # session: extra to install, its constraints file ("" for none), its test files
    "airflow": {"extra": "airflow", "constraints": "constraints/airflow-3.3.2.txt",
                "tests": "tests/adapters/test_airflow.py"},
    "prefect": {"extra": "prefect", "constraints": "",
                "tests": "tests/adapters/test_prefect.py"},
    "dagster": {"extra": "dagster", "constraints": "",
                "tests": "tests/adapters/test_dagster.py tests/adapters/test_dagster_assets.py"
                         " tests/adapters/test_dagster_hooks.py"},
    "metaflow": {"extra": "metaflow", "constraints": "",
                 "tests": "tests/adapters/test_metaflow.py "
                          "tests/adapters/test_metaflow_user_flows.py "
                          "tests/adapters/test_metaflow_switch_branches.py"},
    "kfp": {"extra": "kfp", "constraints": "", "tests": "tests/adapters/test_kfp.py"},
    # ZenML pins pydantic <= 2.12.5 and SQLAlchemy < 2.1: .ci/run also runs tests/unit in
    # this venv, which needs the grafana extra and dill
    "zenml": {"extra": "zenml,grafana", "constraints": "", "more": "dill>=0.3",
              "tests": "tests/adapters/test_zenml.py "
                       "tests/adapters/test_zenml_reliable_steps.py "
                       "tests/adapters/test_zenml_reliable_async_steps.py"},
}
TEST_DEPS = ["pytest>=8", "pytest-timeout>=2.3", "scikit-learn>=1.4"]


def _host(session: nox.Session, name: str) -> None:
    host = HOSTS[name]
    t0 = time.monotonic()
    pins = ["-c", host["constraints"]] if host["constraints"] else []
    more = host.get("more", "").split()  # test-only packages of this session
    session.install(*pins, f".[{host['extra']}]", *TEST_DEPS, *more)  # non-editable
    installed = time.monotonic() - t0
    t1 = time.monotonic()
    session.run("python", "-m", "pytest", *host["tests"].split(), "-q", *session.posargs)
    tested = time.monotonic() - t1
    if os.environ.get("ADAPTER_BENCH") == "1":
        session.run("python", "bench/bench_adapters.py", name)
    session.log(f"{name}: install {installed:.0f}s, tests {tested:.0f}s")


@nox.session
def airflow(session: nox.Session) -> None:
    """Airflow 3.3.2: DAGs from pipelines, dag.test() on SQLite, LocalExecutor kills."""
    _host(session, "airflow")


@nox.session
def prefect(session: nox.Session) -> None:
    """Prefect 3.9.1: flows from pipelines, on Prefect's test harness."""
    _host(session, "prefect")


@nox.session
def dagster(session: nox.Session) -> None:
    """Dagster 1.13.28: jobs from pipelines, in process and on the multiprocess executor."""
    _host(session, "dagster")


@nox.session
def metaflow(session: nox.Session) -> None:
    """Metaflow 2.19.39: generated flows through metaflow.Runner, local datastore."""
    _host(session, "metaflow")


@nox.session
def kfp(session: nox.Session) -> None:
    """Kubeflow Pipelines 2.17.3: compiled YAML, run by kfp.local's SubprocessRunner."""
    _host(session, "kfp")


@nox.session
def zenml(session: nox.Session) -> None:
    """ZenML 0.98.0: pipelines on the local stack (its config in a temporary directory)."""
    _host(session, "zenml")
