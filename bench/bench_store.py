"""What store verification costs, printed as ratios from one run.

    python bench/bench_store.py [--runs 5] [--mib 64]

Verification = inputs hashed as workers read them, existing objects re-hashed before a commit
trusts them. Compared with the same runs with verification switched off (the store as it
was: an object of the right name was trusted).

1. The reference pipeline (pipelines/reference.py), runs in one home so that every commit
   finds its object already there. Target: <= 10 % slower with verification. Timed runs
   swing with the machine's load, so the cost is also computed: the bytes a run hashes to
   verify (each output once at commit, once per step reading it) at the sha256 rate
   measured here, as a share of the run's median duration.
2. Worst case for hashing: a chain passing a large bytes object (``--mib``) from step to step.
3. ``reliability verify`` (fsck) throughput over the store, MiB/s.
4. Encoding outputs: the store's by-value pickles (equal values, equal bytes, whatever the
   process's history) vs ``pickle.dump`` of the same values to a file, both hashed as
   written, for the shapes steps return.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reliability import Pipeline, Runner
from reliability.runner import store as store_mod
from reliability.runner.store import ArtifactStore, fsck


def _big_chain(mib: int) -> Pipeline:
    p = Pipeline("big")

    def make() -> bytes:
        return bytes(range(256)) * (mib << 12)

    def pass_on(make: bytes) -> bytes:
        return make[::-1]

    def size(pass_on: bytes) -> int:
        return len(pass_on)

    p.add(make, name="make")
    p.add(pass_on, name="pass_on")
    p.add(size, name="size")
    return p


def _timed_runs(pipe: Pipeline, home: Path, runs: int) -> tuple[list[float], list[float]]:
    """Alternate verified and unverified runs in one home; durations of each."""
    runner = Runner(pipe, home=home, workers=2)
    runner.run(resume=False)  # warm: the objects exist from here on
    on: list[float] = []
    off: list[float] = []
    for i in range(2 * runs):
        verify = i % 2 == 0
        store_mod.VERIFY = verify  # forked workers inherit the switch
        t0 = time.perf_counter()
        res = runner.run(resume=False)
        (on if verify else off).append(time.perf_counter() - t0)
        assert res.ok, res.failed
    store_mod.VERIFY = True
    runner.close()
    return on, off


def _verified_bytes(pipe: Pipeline, home: Path) -> int:
    """Bytes one run of ``pipe`` hashes for verification: every output re-hashed at its
    commit (the object exists from the runs before) and by each step that reads it."""
    runner = Runner(pipe, home=home)
    rec = runner.ledger.list_runs(limit=1)[0]
    readers = dict.fromkeys(pipe.steps, 0)
    for spec in pipe.steps.values():
        for up in spec.inputs.values():
            readers[up] += 1
    total = sum((1 + readers[row["step"]]) * (row["output_size"] or 0)
                for row in runner.ledger.steps(rec.run_id))
    runner.close()
    return total


def _sha256_rate() -> float:
    import hashlib

    data = bytes(64 << 20)
    t0 = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    return len(data) / (time.perf_counter() - t0)


def _encode_shapes() -> dict[str, object]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(3)
    return {
        "float frame 1e6 x 4": pd.DataFrame(rng.random((1_000_000, 4)), columns=list("abcd")),
        "array 8 MiB": rng.random(1 << 20),
        "frame, 100k-row string column": pd.DataFrame(
            {"id": np.arange(100_000), "city": [f"c{i % 977}" for i in range(100_000)]}),
        "list of 20k records": [(i, f"n{i}", i / 7) for i in range(20_000)],
    }


def bench_encode(tmp: Path) -> None:
    import pickle

    for i, (name, value) in enumerate(_encode_shapes().items()):
        ours, bare = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            store_mod.encode(value, tmp / f"ours-{i}")
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with open(tmp / f"bare-{i}", "wb") as f:
                pickle.dump(value, store_mod._HashingWriter(f), protocol=5)
            bare.append(time.perf_counter() - t0)
        o, b = min(ours), min(bare)
        print(f"encode {name}: store (by value) {1000 * o:.1f} ms, pickle.dump "
              f"{1000 * b:.1f} ms (both hashed as written) -> {o / b:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mib", type=int, default=64)
    args = ap.parse_args()
    from pipelines.reference import pipeline as reference

    with tempfile.TemporaryDirectory() as tmp:
        on, off = _timed_runs(reference, Path(tmp) / "ref", args.runs)
        m_on, m_off = statistics.median(on), statistics.median(off)
        print(f"reference run, median of {args.runs}: verified {m_on:.3f} s, unverified "
              f"{m_off:.3f} s -> {100 * (m_on / m_off - 1):+.1f} % (timed; target <= 10 %)")
        hashed = _verified_bytes(reference, Path(tmp) / "ref")
        rate = _sha256_rate()
        cost = hashed / rate
        print(f"reference run hashes {hashed / 1024:.0f} KiB to verify: {1000 * cost:.2f} ms "
              f"at {rate / 2**20:.0f} MiB/s = {100 * cost / m_off:.3f} % of the run "
              f"(target <= 10 %)")
        on, off = _timed_runs(_big_chain(args.mib), Path(tmp) / "big", args.runs)
        m_on, m_off = statistics.median(on), statistics.median(off)
        print(f"{args.mib} MiB chain (worst case), median of {args.runs}: verified "
              f"{m_on:.3f} s, unverified {m_off:.3f} s -> cost "
              f"{100 * (m_on / m_off - 1):+.1f} %")
        store = ArtifactStore(Path(tmp) / "big" / "store")
        size = sum(store.path(d).stat().st_size for d in store.digests())
        t0 = time.perf_counter()
        report = fsck(store, {})
        dt = time.perf_counter() - t0
        assert not report.corrupt
        print(f"fsck: {report.checked} objects, {size / 2**20:.0f} MiB in {dt:.3f} s -> "
              f"{size / 2**20 / dt:.0f} MiB/s")
        bench_encode(Path(tmp))


if __name__ == "__main__":
    main()
