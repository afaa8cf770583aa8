"""Fault-injection overhead per step when chaos is off.

Each call is what a worker pays per attempt: the attempt scope, ``before`` and ``after``.
Baselines (one run each): a bare StepHook (what the runner pays for any hook), the chaos
hook with no faults, and the chaos hook with faults aimed at *other* steps. The target is
"not measurable": at most 1 µs per step over the bare hook.
"""

from __future__ import annotations

import time
from pathlib import Path

from reliability import Pipeline, StepContext, StepHook
from reliability.chaos.faults import KillWorker, Latency
from reliability.chaos.hook import ChaosHook

N = 100_000
pipe = Pipeline("bench")


@pipe.step
def step() -> int:
    return 1


def per_call(hooks: list[StepHook], rounds: int = 9) -> list[float]:
    """Best seconds per attempt for each hook; the hooks take turns in every round, so a
    load spike on the machine hits them alike instead of whichever ran during it."""
    spec = pipe.steps["step"]
    ctx = StepContext(pipeline="bench", run_id="r", step="step", attempt=1, interval=None,
                      staging_dir=Path("."))
    inputs: dict[str, object] = {}
    best = [float("inf")] * len(hooks)
    for _ in range(rounds):
        for i, hook in enumerate(hooks):
            t = time.perf_counter()
            for _ in range(N):
                with hook.attempt(ctx, spec):
                    hook.after(ctx, spec, hook.before(ctx, spec, inputs))
            best[i] = min(best[i], (time.perf_counter() - t) / N)
    return best


def main() -> None:
    bare, empty, other = per_call([
        StepHook(), ChaosHook(),
        ChaosHook([Latency(name="l", step="elsewhere", seconds=1),
                   KillWorker(name="k", step="elsewhere")])])
    print(f"bare StepHook (baseline)          {bare * 1e9:8.1f} ns/step")
    print(f"chaos hook, no faults             {empty * 1e9:8.1f} ns/step  "
          f"(+{(empty - bare) * 1e9:.1f} ns, {empty / bare:.2f}x baseline)")
    print(f"chaos hook, faults on other steps {other * 1e9:8.1f} ns/step  "
          f"(+{(other - bare) * 1e9:.1f} ns, {other / bare:.2f}x baseline)")
    worst = max(empty, other) - bare
    verdict = "OK" if worst <= 1e-6 else "OVER"
    print(f"overhead vs. target 1 µs/step: {worst * 1e9:.1f} ns -> {verdict}")
    print("chaos off (no hook installed): 0 ns/step by construction")


if __name__ == "__main__":
    main()
