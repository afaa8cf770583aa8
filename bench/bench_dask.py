"""The Dask executor against bare Dask on the same LocalCluster, printed from one run.

    python bench/bench_dask.py [--steps 200] [--trials 5] [--workers 2]

1. Trivial-step throughput: our run loop on the Dask executor (ledger, store commits and
   events included) vs bare ``client.submit`` on the same cluster -- a chain of dependent
   tasks and a batch of independent ones. Target: >= 0.8x.
2. Worker SIGKILL -> retry started: the worker running an attempt is SIGKILLed; time until
   the retry's body starts on another worker (and until our loop dispatched it). Bare Dask
   (a task rerun by the scheduler after its worker died) measured the same way. Target:
   median <= 150 ms.
3. The reference pipeline (pipelines/reference.py) on the local executor vs on Dask (warm
   cluster), outputs compared byte for byte.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from distributed import Client
from pydantic import BaseModel

from reliability import Event, EventKind, Pipeline, Retry, Runner, StepContext
from reliability.runner import dask_executor
from reliability.runner.dask_executor import DaskExecutor


def trivial() -> None:
    return None


def inc(x: int) -> int:
    return x + 1


def _chain(n: int) -> Pipeline:
    p = Pipeline("chain")
    prev: list[str] = []
    for i in range(n):
        p.add(trivial, name=f"c{i}", after=prev)
        prev = [f"c{i}"]
    return p


def _wide(n: int) -> Pipeline:
    p = Pipeline("wide")
    for i in range(n):
        p.add(trivial, name=f"w{i}")
    return p


def _client(workers: int) -> Client:
    """The client of the cluster the executor uses (the same LocalCluster)."""
    ex = DaskExecutor(workers=workers)
    ex.start(_wide(1), [])
    conn = ex._connection()
    ex.shutdown(graceful=True)
    return conn.client


def _wait_workers(client: Client, n: int) -> None:
    deadline = time.monotonic() + 120
    while len(client.nthreads()) < n and time.monotonic() < deadline:
        time.sleep(0.05)


def bench_throughput(n: int, workers: int, home: Path, client: Client) -> None:
    for shape, pipe in (("chain", _chain(n)), ("batch", _wide(n))):
        runner = Runner(pipe, home=home / shape, executor="dask", workers=workers)
        runner.run(resume=False)  # warm: plugin, imports
        t0 = time.perf_counter()
        res = runner.run(resume=False)
        ours = n / (time.perf_counter() - t0)
        assert res.ok and len(res.outputs) == n, res.failed
        t0 = time.perf_counter()
        if shape == "chain":  # dependencies resolved by the scheduler, no client hop
            f = client.submit(inc, 0, pure=False)
            for _ in range(n - 1):
                f = client.submit(inc, f, pure=False)
            f.result()
        else:
            client.gather([client.submit(inc, i, pure=False) for i in range(n)])
        bare = n / (time.perf_counter() - t0)
        line = (f"trivial steps, {shape} of {n}: ours {ours:.0f}/s, bare client.submit "
                f"{bare:.0f}/s -> {ours / bare:.2f}x (target >= 0.8x)")
        if shape == "chain":  # each result back at the client before the next submit,
            t0 = time.perf_counter()  # as a loop that commits between steps must do
            x = 0
            for _ in range(n):
                x = client.submit(inc, x, pure=False).result()
            seq = n / (time.perf_counter() - t0)
            line += f"; bare submit-then-result chain {seq:.0f}/s -> {ours / seq:.2f}x"
        print(line)


class KillParams(BaseModel):
    marks: str


def _mark(marks: str, n: int) -> None:
    """``<marks>/<n>.start``: pid and time the attempt's body started (written atomically)."""
    tmp = Path(marks, f"{n}.tmp")
    tmp.write_text(f"{os.getpid()} {time.time()}")
    tmp.replace(Path(marks, f"{n}.start"))


def sleeper(ctx: StepContext, params: KillParams) -> int:
    _mark(params.marks, ctx.attempt)
    if ctx.attempt == 1:
        time.sleep(60)
    return ctx.attempt


def _bare_sleeper(marks: str) -> int:
    n = len(list(Path(marks).glob("*.start"))) + 1
    _mark(marks, n)
    if n == 1:
        time.sleep(60)
    return n


def _wait_file(path: Path) -> tuple[int, float]:
    deadline = time.monotonic() + 120
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.001)
    pid, at = path.read_text().split()
    return int(pid), float(at)


def bench_kill(trials: int, workers: int, home: Path, client: Client) -> None:
    pipe = Pipeline("killed", params=KillParams)
    pipe.add(sleeper, name="sleeper", retry=Retry(attempts=3, backoff=0))
    ours_body, ours_dispatch, bare = [], [], []
    for i in range(trials):
        _wait_workers(client, workers)
        marks = Path(tempfile.mkdtemp(dir=home))
        runner = Runner(pipe, home=home / "kill", executor="dask", workers=workers)
        started: dict[int, float] = {}
        def seen(ev: Event, started: dict[int, float] = started) -> None:
            started.setdefault(ev.attempt or 0, ev.time)

        runner.bus.subscribe(seen, kinds={EventKind.STEP_STARTED})
        killed: list[float] = []

        def killer(marks: Path = marks, killed: list[float] = killed) -> None:
            pid, _ = _wait_file(marks / "1.start")
            killed.append(time.time())
            os.kill(pid, signal.SIGKILL)

        t = threading.Thread(target=killer)
        t.start()
        res = runner.run({"marks": str(marks)}, run_id=f"kill-{i}")
        t.join()
        assert res.ok, res.failed
        _, body = _wait_file(marks / "2.start")
        ours_body.append(body - killed[0])
        ours_dispatch.append(started[2] - killed[0])
        runner.close()
        # bare Dask: the scheduler reruns the task on the surviving worker
        _wait_workers(client, workers)
        marks = Path(tempfile.mkdtemp(dir=home))
        fut = client.submit(_bare_sleeper, str(marks), pure=False)
        pid, _ = _wait_file(marks / "1.start")
        t_kill = time.time()
        os.kill(pid, signal.SIGKILL)
        _, body = _wait_file(marks / "2.start")
        bare.append(body - t_kill)
        assert fut.result() == 2
    ms = [1000 * statistics.median(x) for x in (ours_dispatch, ours_body, bare)]
    print(f"worker SIGKILL -> retry, median of {trials}: our loop dispatched it "
          f"{ms[0]:.0f} ms, its body started {ms[1]:.0f} ms (target <= 150 ms); bare Dask "
          f"rerun started {ms[2]:.0f} ms (max ours {1000 * max(ours_body):.0f}, bare "
          f"{1000 * max(bare):.0f})")


def bench_reference(workers: int, home: Path, client: Client) -> None:
    from pipelines.reference import pipeline as reference

    local = Runner(reference, home=home / "ref-local", workers=workers)
    t0 = time.perf_counter()
    a = local.run()
    t_local = time.perf_counter() - t0
    _wait_workers(client, workers)
    dask = Runner(reference, home=home / "ref-dask", executor="dask", workers=workers)
    t0 = time.perf_counter()
    dask.run(run_id="first")  # the workers import pandas, scikit-learn... once
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    b = dask.run(resume=False)
    t_dask = time.perf_counter() - t0
    assert a.ok and b.ok, (a.failed, b.failed)
    same = "byte-identical" if a.outputs == b.outputs else "DIFFERENT"
    print(f"reference pipeline: local {t_local:.2f} s (fresh forked workers), Dask first run "
          f"{t_first:.2f} s, next run {t_dask:.2f} s (warm workers) -> {t_dask / t_local:.2f}x"
          f" of local; outputs {same}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    print("load average at start: {:.2f} {:.2f} {:.2f} ({} cpus)".format(
        *os.getloadavg(), os.cpu_count()))
    t0 = time.perf_counter()
    client = _client(args.workers)
    print(f"LocalCluster of {args.workers} single-threaded workers started in "
          f"{time.perf_counter() - t0:.1f} s")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            bench_throughput(args.steps, args.workers, home, client)
            bench_kill(args.trials, args.workers, home, client)
            bench_reference(args.workers, home, client)
    finally:
        dask_executor.close_clusters()
        print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
