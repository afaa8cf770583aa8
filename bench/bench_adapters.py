"""Adapter overhead per task: our step wrapper vs the bare task, inside each orchestrator.

    python bench/bench_adapters.py airflow      # in the Airflow venv (nox -s airflow)
    python bench/bench_adapters.py prefect      # in the Prefect venv (nox -s prefect)
    python bench/bench_adapters.py dagster      # in the Dagster venv (nox -s dagster)
    python bench/bench_adapters.py metaflow     # in the Metaflow venv (nox -s metaflow)
    python bench/bench_adapters.py zenml        # in the ZenML venv (nox -s zenml)
    python bench/bench_adapters.py kfp          # in the KFP venv (nox -s kfp)

A chain of ``--steps`` tasks, each doing ``--work-ms`` of CPU work and returning a small
dict, runs twice under the orchestrator: as bare ``@task`` functions handing each other
their values (XCom / task results), and as a pipeline through our adapter (ledger, store,
events, SLA checks and runbooks around every task; digests handed on). For the hosts that
start a process per task (Metaflow, KFP) that includes importing this project and opening
the bridge's session in every task; the bare tasks import only the benchmark module. Each
task's duration is the orchestrator's own record (Airflow task instance start/end, Prefect
task run start/end, Dagster's step duration, Metaflow's task creation to its last
metadata: a whole task process, ZenML's step run start/end; for KFP's local runner, which
records no task times, the CPU time of each task's interpreter, exit included, as a
launcher between KFP and the interpreter reaps it (the robust figure on a shared machine),
and a whole run's wall time divided by its tasks). KFP also runs two more shapes: the
floor of a task of this design (a bare task that also loads the pipeline by its reference,
writes its attempt's two rows to a SQLite file and hashes its output), and the bare task
that ends with ``gc.freeze()``, as the adapter's component freezes the heap: what that
alone saves a task process.
Target: wrapper overhead <= 10% of the bare task's time, or <= 2 ms per task.
One warm-up run of each shape, then three measured runs of each, interleaved; medians over
all their tasks. KFP: eleven rounds, and the overhead is the median of the differences
between each task and the bare task at the same place of the chain in the same round.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KFP_ROUNDS = 11  # a KFP run is short and its wall time noisy: more of them
ROUNDS = 3  # measured runs of each shape, interleaved, after one warm-up run of each


def work(ms: float, seed: int) -> dict[str, int]:
    """Deterministic CPU work lasting about ``ms`` milliseconds."""
    end = time.perf_counter() + ms / 1000
    acc, i = seed, 0
    while time.perf_counter() < end:
        acc = (acc * 1103515245 + 12345) % 2**31
        i += 1
    return {"acc": acc % 1000, "seed": seed}


def chain(steps: int, ms: float) -> Any:
    """The benchmark pipeline: s0 -> s1 -> ... each doing ``ms`` of work."""
    from reliability import Pipeline

    pipe = Pipeline("bench")
    prev: str | None = None
    for i in range(steps):
        def step(up: dict[str, int] | None = None, _i: int = i) -> dict[str, int]:
            return work(ms, up["acc"] if up else _i)

        pipe.add(step, name=f"s{i}", inputs={"up": prev} if prev else {})
        prev = f"s{i}"
    return pipe


def wrapper_alone(steps: int) -> None:
    """The step wrapper without a host: ``run_step`` per step (ledger, store, events, SLA
    checks) around a step doing no work, measured in this process."""
    from reliability.adapters import HostAttempt, StepBridge

    with tempfile.TemporaryDirectory() as tmp:
        n = max(steps, 30)
        bridge = StepBridge(chain(n, 0), home=tmp, contracts=False)
        refs: dict[str, Any] = {}
        bridge.run_step(HostAttempt("warm-up", "s0", 1, True), {})  # opens the session
        cost = []
        for step in bridge.order:
            t0 = time.perf_counter()
            refs[step] = bridge.run_step(HostAttempt("bench", step, 1, True), refs)
            cost.append(time.perf_counter() - t0)
        bridge.close()
    print(f"step wrapper alone: {statistics.median(cost) * 1000:.2f} ms per step "
          f"(median of {n}; ledger, store, events and SLA checks included)")


def report(host: str, bare: list[float], wrapped: list[float], *,
           paired: bool = False, of: str = "tasks") -> None:
    """Medians of both shapes and the overhead; ``paired``: the lists pair up (the same
    round of interleaved runs, the same task), and the overhead is the median of the pairs'
    differences (a load change on the machine between rounds hits both of a pair alike)."""
    b, w = statistics.median(bare), statistics.median(wrapped)
    over = (statistics.median([x - y for x, y in zip(wrapped, bare, strict=True)])
            if paired else w - b)
    ratio = over / b if b else float("inf")
    ok = over <= 0.002 or ratio <= 0.10
    print(f"{host}: bare task {b * 1000:.1f} ms, wrapped task {w * 1000:.1f} ms "
          f"(medians of {len(bare)} and {len(wrapped)} {of})")
    print(f"{host}: wrapper overhead {over * 1000:+.1f} ms per task = {ratio:+.1%} of the bare "
          f"task{' (median of the paired differences)' if paired else ''}; "
          f"target <= 10% or <= 2 ms: {'met' if ok else 'NOT met'}")


# -- Airflow ---------------------------------------------------------------------------------
DAG_FILE = """\
import json, sys, time
sys.path[:0] = [{root!r}, {bench!r}]
from airflow.sdk import DAG, task
import datetime as dt
from bench_adapters import chain, work
from reliability.adapters.airflow import to_dag

STEPS, MS, ROUNDS = {steps}, {ms}, {rounds}
with DAG("bench_bare", schedule=None, start_date=dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
         catchup=False) as bare:
    prev = None
    for i in range(STEPS):
        @task(task_id=f"s{{i}}")
        def step(up=None, _i=i):
            return work(MS, up["acc"] if up else _i)
        prev = step(prev) if prev is not None else step()

wrapped = to_dag(chain(STEPS, MS), dag_id="bench_wrapped", home={home!r}, contracts=False)

if __name__ == "__main__":
    out = {{"bench_bare": [], "bench_wrapped": []}}
    for n, dag in enumerate((bare, wrapped) * (1 + ROUNDS)):  # a warm-up round, then measured
        run = dag.test()
        assert str(run.state).endswith("success"), run.state
        if n >= 2:
            out[dag.dag_id] += [(ti.end_date - ti.start_date).total_seconds()
                                for ti in run.get_task_instances()]
    print("RESULT " + json.dumps(out))
"""


def bench_airflow(steps: int, ms: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        dags = home / "dags"
        dags.mkdir()
        env = dict(os.environ, AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(dags),
                   AIRFLOW__CORE__LOAD_EXAMPLES="False",
                   AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING")
        env.pop("AIRFLOW__CORE__EXECUTOR", None)
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env,
                       check=True, capture_output=True)
        dag_file = dags / "bench_dags.py"
        dag_file.write_text(DAG_FILE.format(root=str(ROOT), bench=str(ROOT / "bench"),
                                            steps=steps, ms=ms, rounds=ROUNDS,
                                            home=str(home / "rel")))
        proc = subprocess.run([sys.executable, str(dag_file)], env=env, cwd=tmp,
                              capture_output=True, text=True, check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not lines:
            sys.exit(f"the benchmark DAGs failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
        out = json.loads(lines[-1].removeprefix("RESULT "))
        report("airflow dag.test()", out["bench_bare"], out["bench_wrapped"])


# -- Prefect ---------------------------------------------------------------------------------
def bench_prefect(steps: int, ms: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(PREFECT_HOME=str(Path(tmp) / "prefect"),
                          PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="300",
                          PREFECT_SERVER_ANALYTICS_ENABLED="false",
                          PREFECT_LOGGING_LEVEL="WARNING")
        from prefect import flow, task
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
        from prefect.testing.utilities import prefect_test_harness

        from reliability.adapters.prefect import to_flow

        @task(persist_result=False)
        def bare_step(up: dict[str, int] | None, i: int) -> dict[str, int]:
            return work(ms, up["acc"] if up else i)

        @flow(persist_result=False)
        def bare() -> None:
            prev = None
            for i in range(steps):
                prev = bare_step.submit(prev, i)
            prev.result()

        wrapped = to_flow(chain(steps, ms), name="bench-wrapped", home=Path(tmp) / "rel",
                          contracts=False)

        def durations(state: Any) -> list[float]:
            """Each task run's start to end as Prefect's API recorded it (task states
            reach the API as events, a moment after the flow returns)."""
            flt = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
            deadline = time.monotonic() + 60
            with get_client(sync_client=True) as client:
                while True:
                    runs = client.read_task_runs(flow_run_filter=flt)
                    if len(runs) == steps and all(r.start_time and r.end_time for r in runs):
                        return [(r.end_time - r.start_time).total_seconds() for r in runs]
                    if time.monotonic() > deadline:
                        sys.exit("Prefect's API did not record the task runs within 60 s")
                    time.sleep(0.2)

        b: list[float] = []
        w: list[float] = []
        with prefect_test_harness(server_startup_timeout=300):
            bare(return_state=True)  # warm-up
            wrapped(return_state=True)
            for _ in range(ROUNDS):  # interleaved, so load changes hit both alike
                b += durations(bare(return_state=True))
                w += durations(wrapped(return_state=True))
        report("prefect", b, w)


# -- Dagster ---------------------------------------------------------------------------------
def _dagster_body(ms: float) -> Any:
    def body(context, **up: Any) -> dict[str, int]:  # type: ignore[no-untyped-def]
        op = getattr(context, "op_execution_context", context).op  # assets: no .op of their own
        seed = next(iter(up.values()))["acc"] if up else int(op.name[1:])
        return work(ms, seed)

    return body


def bench_dagster(steps: int, ms: float) -> None:
    """Three shapes, each bare vs ours: a job of ops vs ``to_job``; assets vs ``to_assets``
    (``materialize``); a team's job of ops vs the same ops under ``@reliable``."""
    import dagster as dg

    from reliability.adapters.dagster import reliable, resources, run_config, to_assets, to_job

    def ops(wrap: Any = None) -> Any:
        nodes = []
        deps: dict[str, dict[str, Any]] = {}
        for i in range(steps):
            ins = {"up": dg.In(dict)} if i else {}
            op = dg.op(name=f"s{i}", ins=ins, out=dg.Out(dict))(_dagster_body(ms))
            nodes.append(wrap(op) if wrap else op)
            deps[f"s{i}"] = {"up": dg.DependencyDefinition(f"s{i - 1}")} if i else {}
        return dg.GraphDefinition(name="bench_ops", node_defs=nodes,
                                  dependencies=deps).to_job()

    bare_assets = [dg.asset(name=f"s{i}", ins={"up": dg.AssetIn(key=f"s{i - 1}")} if i
                            else {})(_dagster_body(ms)) for i in range(steps)]

    def durations(result: Any) -> list[float]:
        assert result.success
        return [ev.event_specific_data.duration_ms / 1000 for ev in result.all_events
                if ev.event_type_value == "STEP_SUCCESS"]

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "rel"
        wrapped = to_job(chain(steps, ms), name="bench_wrapped", home=home, contracts=False)
        assets = to_assets(chain(steps, ms), home=home, contracts=False)
        guarded = ops(reliable(home=home, contracts=False))
        shapes = {
            "dagster execute_in_process (job of ops)": (
                lambda: ops().execute_in_process(),
                lambda: wrapped.execute_in_process(run_config=run_config())),
            "dagster materialize (assets)": (
                lambda: dg.materialize(bare_assets),
                lambda: dg.materialize(assets, resources=resources(),
                                       run_config=run_config())),
            "dagster execute_in_process (a team's ops under @reliable)": (
                lambda: ops().execute_in_process(), guarded.execute_in_process),
        }
        for name, (bare, ours) in shapes.items():
            bare()  # warm-up
            ours()
            b: list[float] = []
            w: list[float] = []
            for _ in range(ROUNDS):  # interleaved, so load changes hit both alike
                b += durations(bare())
                w += durations(ours())
            report(name, b, w)


# -- Metaflow --------------------------------------------------------------------------------
BARE_FLOW = """\
from metaflow import FlowSpec, step
from bench_adapters import work


class BenchBareFlow(FlowSpec):
    @step
    def start(self):
        self.up = None
        self.next(self.s0)
{steps}
    @step
    def end(self):
        pass


if __name__ == "__main__":
    BenchBareFlow()
"""
BARE_STEP = """
    @step
    def s{i}(self):
        self.up = work({ms}, self.up["acc"] if self.up else {i})
        self.next(self.{nxt})
"""


def bench_metaflow(steps: int, ms: float) -> None:
    from reliability.adapters.metaflow import flow_source

    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        (cwd / "bench_chain.py").write_text(
            f"from bench_adapters import chain\npipe = chain({steps}, {ms})\n")
        (cwd / "bench_bare.py").write_text(BARE_FLOW.format(steps="".join(
            BARE_STEP.format(i=i, ms=ms, nxt=f"s{i + 1}" if i + 1 < steps else "end")
            for i in range(steps))))
        sys.path[:0] = [str(cwd), str(ROOT / "bench")]
        (cwd / "bench_wrapped.py").write_text(flow_source(
            "bench_chain:pipe", class_name="BenchWrappedFlow", home=cwd / "rel",
            contracts=False))
        env = {"USERNAME": os.environ.get("USERNAME", "bench"),
               "METAFLOW_DEFAULT_DATASTORE": "local", "METAFLOW_DEFAULT_METADATA": "local",
               "PYTHONPATH": os.pathsep.join([str(cwd), str(ROOT / "bench"), str(ROOT),
                                              os.environ.get("PYTHONPATH", "")])}
        os.environ["USERNAME"] = env["USERNAME"]
        os.chdir(cwd)
        from metaflow import Runner

        def durations(flow: str) -> list[float]:
            with Runner(str(cwd / flow), show_output=False, env=env, cwd=tmp) as runner:
                result = runner.run()
                assert result.status == "successful", result.stderr[-4000:]
                return [(t.finished_at - t.created_at).total_seconds()
                        for s in result.run if s.id not in ("start", "end") for t in s]

        durations("bench_bare.py")  # warm-up
        durations("bench_wrapped.py")
        b: list[float] = []
        w: list[float] = []
        for _ in range(ROUNDS):  # interleaved, so load changes hit both alike
            b += durations("bench_bare.py")
            w += durations("bench_wrapped.py")
        os.chdir(ROOT)
    report("metaflow (task processes)", b, w)


# -- ZenML -----------------------------------------------------------------------------------
def zenml_bare(up: dict[str, int] | None, i: int, ms: float) -> dict[str, int]:
    """The bare ZenML step (made a step in bench_zenml: ZenML loads steps by import path)."""
    return work(ms, up["acc"] if up else i)


def bench_zenml(steps: int, ms: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(ZENML_CONFIG_PATH=str(Path(tmp) / "zenml"),
                          ZENML_ANALYTICS_OPT_IN="false", ZENML_LOGGING_VERBOSITY="WARN")
        from zenml import pipeline, step

        from reliability.adapters.zenml import reliable, to_pipeline

        module = sys.modules[__name__]
        bare_step = step(zenml_bare, enable_cache=False)
        module.zenml_bare = bare_step  # type: ignore[attr-defined]

        @pipeline(enable_cache=False)
        def bench_bare() -> None:
            prev = None
            for i in range(steps):
                prev = bare_step(up=prev, i=i, ms=ms, id=f"s{i}")

        wrapped = to_pipeline(chain(steps, ms), name="bench_wrapped", home=Path(tmp) / "rel",
                              contracts=False)
        team_step = reliable(bare_step, pipeline="bench_team", home=Path(tmp) / "rel",
                             contracts=False)

        @pipeline(enable_cache=False)
        def bench_team() -> None:  # the bare steps, each under @reliable
            prev = None
            for i in range(steps):
                prev = team_step(up=prev, i=i, ms=ms, id=f"s{i}")

        def durations(run: Any) -> list[float]:
            assert str(run.status.value) == "completed", run.status
            return [(st.end_time - st.start_time).total_seconds()
                    for st in run.steps.values()]

        bench_bare()  # warm-up
        wrapped(params={})
        bench_team()
        b: list[float] = []
        w: list[float] = []
        g: list[float] = []
        for _ in range(ROUNDS):  # interleaved, so load changes hit all alike
            b += durations(bench_bare())
            w += durations(wrapped(params={}))
            g += durations(bench_team())
    report("zenml (local orchestrator)", b, w)
    report("zenml (a team's steps under @reliable)", b, g)


# -- Kubeflow Pipelines (local runner) ------------------------------------------------------
def kfp_bare(up: str, i: int, ms: float) -> str:
    """The bare KFP component (KFP ships only this function's source)."""
    import json

    from bench_adapters import work

    prev = json.loads(up) if up else None
    return json.dumps(work(ms, prev["acc"] if prev else i))


def kfp_bare_frozen(up: str, i: int, ms: float) -> str:
    """The bare component, then ``gc.freeze()`` as the adapter's component does: what the
    freeze alone saves a task process (the collection at its exit walks fewer objects)."""
    import gc

    from bench_adapters import kfp_bare

    out: str = kfp_bare(up, i, ms)
    gc.freeze()
    return out


def kfp_floor(up: str, i: int, target: str, ledger: str) -> str:
    """The least a task of the issue's design does beside the bare work: load the pipeline
    by its reference, record the attempt's start and end as two rows of a SQLite ledger,
    name the output by its sha256 (no contracts, events, store or SLA checks)."""
    import json
    import sqlite3

    from reliability._sha import sha256  # as cheap as the wrapper's hashing
    from reliability.pipeline import load_pipeline

    step = load_pipeline(target).steps[f"s{i}"]
    db = sqlite3.connect(ledger, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS attempts (step TEXT, status TEXT, digest TEXT)")
    db.execute("INSERT INTO attempts VALUES (?, 'running', NULL)", (step.name,))
    prev = json.loads(up) if up else None
    out = json.dumps(step.fn(prev))
    digest = sha256(out.encode()).hexdigest()
    db.execute("INSERT INTO attempts VALUES (?, 'succeeded', ?)", (step.name, digest))
    db.close()
    return out


def bench_kfp(steps: int, ms: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "bench"), str(ROOT),
                                                    os.environ.get("PYTHONPATH", "")])
        (Path(tmp) / "bench_chain.py").write_text(
            f"from bench_adapters import chain\npipe = chain({steps}, {ms})\n")
        os.environ["PYTHONPATH"] = os.pathsep.join([tmp, os.environ["PYTHONPATH"]])
        sys.path.insert(0, tmp)
        import kfp.local
        from kfp import dsl

        from reliability.adapters.kfp import to_pipeline

        kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False),
                       pipeline_root=str(Path(tmp) / "kfp"))

        def bare_chain(fn: Any, name: str, **kw: Any) -> Any:
            """A KFP pipeline of ``steps`` tasks of component ``fn``, each fed the last."""
            # KFP reads annotations as types: this module postpones them
            fn.__annotations__ = {"up": str, "i": int, **{k: type(v) for k, v in kw.items()},
                                  "return": str}
            component = dsl.component(fn, install_kfp_package=False, base_image="python:3.11")

            def build() -> None:
                prev = ""
                for i in range(steps):
                    prev = component(up=prev, i=i, **kw).set_caching_options(False).output

            build.__annotations__ = {"return": None}
            return dsl.pipeline(build, name=name)

        bare = bare_chain(kfp_bare, "bench-bare", ms=ms)
        frozen = bare_chain(kfp_bare_frozen, "bench-bare-frozen", ms=ms)
        floor = bare_chain(kfp_floor, "bench-floor", target="bench_chain:pipe",
                           ledger=str(Path(tmp) / "floor.db"))
        wrapped = to_pipeline("bench_chain:pipe", name="bench-wrapped",
                              home=Path(tmp) / "rel", contracts=False,
                              install_kfp_package=False, base_image="python:3.11")

        # KFP starts each task as `python3 -m kfp.dsl.executor_main` with sys.executable
        # for python3: a launcher there reaps the interpreter with wait4 and logs its CPU
        # time, exit included (the launcher's own time is not counted)
        launcher = Path(tmp) / "python-cpu-log"
        launcher.write_text(LAUNCHER.format(python=sys.executable))
        launcher.chmod(0o755)
        log = Path(tmp) / "cpu.log"
        os.environ["BENCH_CPU_LOG"] = str(log)

        def per_task(pipe: Any, **kw: Any) -> tuple[float, list[float]]:
            """A run's wall time per task, and each task process's CPU time."""
            log.write_text("")
            real, sys.executable = sys.executable, str(launcher)
            t0 = time.perf_counter()
            try:
                with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                    pipe(**kw)  # the local runner prints every task's streamed logs
            finally:
                sys.executable = real
            wall = time.perf_counter() - t0
            cpu = [float(x) for x in log.read_text().split()]
            assert len(cpu) == steps, f"{len(cpu)} task processes logged, not {steps}"
            return wall / steps, cpu

        logging.getLogger().setLevel(logging.WARNING)  # KFP logs each task at INFO
        shapes = {"bare": (bare, {}), "wrapped": (wrapped, {"params": "{}"}),
                  "floor": (floor, {}), "frozen": (frozen, {})}
        for pipe, kw in shapes.values():  # warm-up
            per_task(pipe, **kw)
        got: dict[str, list[tuple[float, list[float]]]] = {name: [] for name in shapes}
        for _ in range(KFP_ROUNDS):  # interleaved, so load changes hit all alike
            for name, (pipe, kw) in shapes.items():
                got[name].append(per_task(pipe, **kw))
    labels = (("kfp local SubprocessRunner", "wrapped"),
              ("kfp floor: pipeline by reference + 2 SQLite rows + sha256", "floor"),
              ("kfp bare task + gc.freeze() (the freeze alone)", "frozen"))
    for label, name in labels:  # paired: the same round, the same task of the chain
        report(f"{label} (CPU time of each task process)",
               [c for _, cpu in got["bare"] for c in cpu],
               [c for _, cpu in got[name] for c in cpu], paired=True)
    for label, name in labels:
        report(f"{label} (run wall time / tasks)", [w for w, _ in got["bare"]],
               [w for w, _ in got[name]], paired=True, of="runs")


LAUNCHER = """\
#!{python} -S
import os, sys
pid = os.fork()
if pid == 0:
    os.execv({python!r}, [{python!r}, *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
with open(os.environ["BENCH_CPU_LOG"], "a") as log:
    log.write(f"{{usage.ru_utime + usage.ru_stime}}\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("host", choices=["airflow", "prefect", "dagster", "metaflow", "zenml",
                                     "kfp"])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--work-ms", type=float, default=50.0)
    ap.add_argument("--pycache", metavar="DIR",
                    help="let every task process keep compiled bytecode in DIR "
                         "(PYTHONPYCACHEPREFIX), as installed packages have it; the warm-up "
                         "runs fill it, for the bare and the wrapped tasks alike. Default: "
                         "this environment's setting")
    args = ap.parse_args()
    if args.pycache:
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = str(Path(args.pycache).resolve())
    t0 = time.perf_counter()
    print(f"python {sys.version.split()[0]}; task processes' bytecode: "
          + (f"cached in {os.environ['PYTHONPYCACHEPREFIX']}" if args.pycache else
             "not written (PYTHONDONTWRITEBYTECODE): each task process compiles every module "
             "it imports that has no .pyc" if os.environ.get("PYTHONDONTWRITEBYTECODE")
             else "as this environment has it"))
    wrapper_alone(args.steps)
    {"airflow": bench_airflow, "prefect": bench_prefect, "dagster": bench_dagster,
     "metaflow": bench_metaflow, "zenml": bench_zenml, "kfp": bench_kfp}[args.host](
        args.steps, args.work_ms)
    print(f"({args.host} benchmark took {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
