"""Runner benchmarks, printed as ratios from one run.

    python bench/bench_runner.py [--steps 4000] [--workers 2]

1. Trivial-step throughput: our local runner (ledger, atomic commits and events included) vs
   ``ProcessPoolExecutor`` (the floor: no ledger, no store) and Dask ``LocalCluster`` (if
   installed). Target: >= 2,000 steps/s on 2 cores.
2. Time from a worker SIGKILL to the retry being dispatched (STEP_STARTED of attempt 2).
   Target: <= 50 ms.
3. Runner overhead per step (sequential chain on one worker) vs a bare function call.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from reliability import EventBus, EventKind, Pipeline, Retry, Runner, StepContext


def trivial() -> None:
    return None


def trivial_ctx(ctx: StepContext) -> int:
    return ctx.attempt


def _wide(n: int) -> Pipeline:
    p = Pipeline("wide")
    for i in range(n):
        p.add(trivial, name=f"s{i}")
    return p


def _chain(n: int) -> Pipeline:
    p = Pipeline("chain")
    prev: list[str] = []
    for i in range(n):
        p.add(trivial, name=f"c{i}", after=prev)
        prev = [f"c{i}"]
    return p


def bench_ours(n: int, workers: int, home: Path) -> float:
    pipe = _wide(n)
    runner = Runner(pipe, home=home / "wide", workers=workers)
    t0 = time.perf_counter()
    res = runner.run(resume=False)
    dt = time.perf_counter() - t0
    assert res.ok and len(res.outputs) == n
    return n / dt


def bench_ppe(n: int, workers: int) -> float:
    with ProcessPoolExecutor(workers) as ex:
        list(ex.map(trivial_ctx_free, range(workers * 4)))  # warm the pool
        t0 = time.perf_counter()
        futs = [ex.submit(trivial) for _ in range(n)]
        for f in futs:
            f.result()
        return n / (time.perf_counter() - t0)


def trivial_ctx_free(_: int) -> None:
    return None


def bench_dask(n: int, workers: int) -> float | None:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        return None
    import logging

    logging.getLogger("distributed").setLevel(logging.ERROR)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, host="127.0.0.1",
                      silence_logs=logging.CRITICAL) as cluster, \
            Client(cluster) as client:
        client.gather(client.map(trivial_ctx_free, range(100), pure=False))
        t0 = time.perf_counter()
        futs = client.map(trivial_ctx_free, range(n), pure=False)
        client.gather(futs)
        return n / (time.perf_counter() - t0)


def sleeper(ctx: StepContext) -> int:
    if ctx.attempt == 1:
        time.sleep(30)
    return ctx.attempt


def bench_kill_to_retry(rounds: int, home: Path) -> list[float]:
    pipe = Pipeline("killme")
    pipe.add(sleeper, name="victim", retry=Retry(attempts=2, backoff=0))
    out: list[float] = []
    for i in range(rounds):
        bus = EventBus()
        marks: dict[str, float] = {}

        def on_start(ev: object, marks: dict[str, float] = marks) -> None:
            assert hasattr(ev, "attempt") and hasattr(ev, "details")
            if ev.attempt == 1:
                time.sleep(0.02)  # let the step get going
                marks["kill"] = time.perf_counter()
                os.kill(ev.details["worker_pid"], signal.SIGKILL)
            else:
                marks["retry"] = time.perf_counter()

        bus.subscribe(on_start, kinds={EventKind.STEP_STARTED})
        res = Runner(pipe, home=home / f"kill{i}", workers=1, bus=bus).run(resume=False)
        assert res.ok
        out.append(marks["retry"] - marks["kill"])
    return out


def bench_overhead(n: int, home: Path) -> tuple[float, float]:
    t0 = time.perf_counter()
    for _ in range(n):
        trivial()
    bare = (time.perf_counter() - t0) / n
    runner = Runner(_chain(n), home=home / "chain", workers=1)
    t0 = time.perf_counter()
    assert runner.run(resume=False).ok
    ours = (time.perf_counter() - t0) / n
    return bare, ours


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kills", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        ours = bench_ours(args.steps, args.workers, home)
        ppe = bench_ppe(args.steps, args.workers)
        dask = bench_dask(args.steps, args.workers)
        print(f"throughput, {args.steps} trivial steps on {args.workers} workers "
              f"({os.cpu_count()} cpus):")
        print(f"  reliability Runner      {ours:8.0f} steps/s   (target >= 2000)")
        print(f"  ProcessPoolExecutor     {ppe:8.0f} steps/s   ours/floor = {ours / ppe:.2f}x")
        if dask is not None:
            print(f"  dask LocalCluster       {dask:8.0f} steps/s   "
                  f"ours/dask  = {ours / dask:.2f}x")
        else:
            print("  dask LocalCluster       (not installed: pip install "
                  "'pipeline-reliability[dask]')")
        kills = bench_kill_to_retry(args.kills, home)
        p95 = sorted(kills)[int(0.95 * (len(kills) - 1))]
        print(f"SIGKILL -> retry dispatched ({len(kills)} kills): median "
              f"{statistics.median(kills) * 1e3:.1f} ms, p95 {p95 * 1e3:.1f} ms, "
              f"max {max(kills) * 1e3:.1f} ms  (target <= 50 ms)")
        bare, per_step = bench_overhead(1000, home)
        print(f"overhead per step (1000-step chain, 1 worker): {per_step * 1e6:.0f} us"
              f" vs bare call {bare * 1e9:.0f} ns  (ratio {per_step / bare:,.0f}x; includes "
              "IPC, ledger and atomic commit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
