"""The reference pipeline's full ``reliability contracts test`` (generated inputs for every
synthesizable step at the default 25 examples, the recorded-inputs check and every
mutation), as a user runs it: wall time against the 15 s target, with the CPU time of the
same runs (on a shared machine the wall time includes waiting for a core; the load average
is printed so the two can be read together). Run: ``python bench/bench_contract_tests.py``.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 15.0
RUNS = 3


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RELIABILITY_HOME", None)
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(RUNS):
        cpu0, t0 = _children_cpu(), time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "reliability", "contracts", "test"],
                              cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        walls.append(time.perf_counter() - t0)
        cpus.append(_children_cpu() - cpu0)
        if done.returncode != 0:
            sys.exit(f"reliability contracts test failed:\n{done.stdout}\n{done.stderr}")
    summary = done.stdout.strip().splitlines()[-1]
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    print(f"reliability contracts test, reference pipeline ({summary})")
    print(f"  wall {wall:.1f} s median of {RUNS} (min {min(walls):.1f} s), target <= "
          f"{TARGET:.0f} s: {wall / TARGET:.2f}x the target "
          f"({'met' if wall <= TARGET else 'missed'})")
    print(f"  cpu  {cpu:.1f} s median (min {min(cpus):.1f} s): {cpu / TARGET:.2f}x the target; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
