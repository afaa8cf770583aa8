"""Benchmarks of the on-call server (``reliability serve``) over a ledger of 10,000 runs.

1. Runbook page render time (target <= 50 ms): a real HTTP GET of the page behind an
   alert's runbook_url, found and rendered from the ledger's evidence -- for the latest
   failure of a step (the usual case: the alert just fired) and for a failure kind whose
   only occurrence is 9,900 runs back (the scan's worst case).
2. Webhook -> stored and rendered (target <= 100 ms): a real POST of one firing Alertmanager
   alert, answered once its evidence is found, its runbook rendered and both stored.

Each figure is printed as a ratio against its target. Run: ``python bench/bench_oncall.py``.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from reliability.runner.ledger import Ledger
from reliability.web import serve

RUNS = 10_000
STEPS = ("ingest", "validate", "featurize", "train", "evaluate")
RUNBOOK_TARGET_MS, WEBHOOK_TARGET_MS = 50.0, 100.0


def build_ledger(path: Path) -> None:
    """10,000 runs of five steps; every 10th fails at train, one old run lost a worker."""
    with Ledger(path) as led:
        led.db.execute("PRAGMA synchronous=OFF")  # setup only: nothing here is measured
        for i in range(RUNS):
            run_id = f"bench-{i:05d}"
            failed = i % 10 == 3
            led.create_run(run_id, "bench", run_id, {"i": i}, STEPS, trigger="schedule",
                           interval=("2026-01-01T00:00:00+00:00",
                                     "2026-01-02T00:00:00+00:00"))
            led.mark_run_started(run_id)
            for n, step in enumerate(STEPS):
                led.start_attempt(run_id, step, 1, 1000 + n, {})
                if failed and step == "train":
                    led.end_attempt(run_id, step, 1, "failed", "ValueError", "diverged")
                    led.record_event(run_id, time.time(), "step_failed", step, 1,
                                     {"error": "diverged", "error_type": "ValueError"})
                    break
                if i == 100 and step == "featurize":
                    led.record_event(run_id, time.time(), "worker_lost", step, 1,
                                     {"error": "worker pid 1002 died (exit code -9)"})
                led.commit_step(run_id, step, 1, f"{i:058d}{n:06d}", "pickle", 100)
            led.finish_run(run_id, "failed" if failed else "succeeded",
                           "train failed" if failed else None)


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    fn()  # warm: templates compiled, pages cached by SQLite
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200
        return bytes(resp.read())


def report(what: str, times: list[float], target: float) -> None:
    med = statistics.median(times)
    p95 = sorted(times)[int(len(times) * 0.95) - 1]
    print(f"{what:<52} median {med:6.1f} ms  p95 {p95:6.1f} ms  "
          f"{med / target:4.2f}x target (<= {target:.0f} ms)")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        t0 = time.perf_counter()
        build_ledger(home / "ledger.db")
        print(f"ledger of {RUNS:,} runs built in {time.perf_counter() - t0:.1f} s")
        with serve(home, port=0, metrics=False) as server:
            latest = get(f"{server.url}/runbooks/bench/step_failed.html?step=train")
            assert b"bench-09993" in latest, "the latest failure is the evidence"
            old = get(f"{server.url}/runbooks/bench/worker_lost.html?step=featurize")
            assert b"bench-00100" in old, "the only worker loss is the evidence"
            report("runbook page, latest failure (HTTP GET)",
                   timed(lambda: get(f"{server.url}/runbooks/bench/step_failed.html"
                                     "?step=train"), 50), RUNBOOK_TARGET_MS)
            report("runbook page, failure 9,900 runs back (HTTP GET)",
                   timed(lambda: get(f"{server.url}/runbooks/bench/worker_lost.html"
                                     "?step=featurize"), 50), RUNBOOK_TARGET_MS)
            counter = iter(range(1_000_000))

            def post() -> None:
                n = next(counter)
                body = json.dumps({"version": "4", "status": "firing", "alerts": [{
                    "status": "firing", "fingerprint": f"{n:016x}",
                    "startsAt": "2030-01-01T00:00:00Z",
                    "labels": {"alertname": "ReliabilityStepFailed", "pipeline": "bench",
                               "step": "train", "severity": "page"},
                    "annotations": {"summary": "train failed", "runbook_url":
                                    f"{server.url}/runbooks/bench/step_failed.html"
                                    "?step=train"}}]}).encode()
                req = urllib.request.Request(f"{server.url}/alerts/webhook", data=body,
                                             method="POST")
                with urllib.request.urlopen(req, timeout=30) as resp:
                    stored = json.loads(resp.read())["stored"][0]
                assert stored["run_id"] == "bench-09993"

            report("webhook -> stored and rendered (HTTP POST)", timed(post, 50),
                   WEBHOOK_TARGET_MS)
            alerts = server.app.ledger.alerts(limit=1)
            assert alerts and alerts[0].runbook and "bench-09993" in alerts[0].runbook


if __name__ == "__main__":
    main()
