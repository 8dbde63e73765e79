"""CLI start-up: wall time of ``python -m cli --help`` beside a bare ``python -c pass``, interleaved,
fresh processes, medians.

    .venv/bin/python -m bench.bench_cli [--rounds 15]

Prints the ratio last; target: ``--help`` <= 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "python -m cli --help": [sys.executable, "-m", "cli", "--help"],
    "python -m cli ensemble create --help": [sys.executable, "-m", "cli", "ensemble", "create", "--help"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(
        f"bench_cli: {os.cpu_count()} cores, load average {' '.join(open('/proc/loadavg').read().split()[:3])}; "
        f"{args.rounds} rounds, interleaved"
    )
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(args.rounds):
        for name, cmd in COMMANDS.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - t0)
    for name, values in times.items():
        print(f"  {name:<40} median {statistics.median(values):6.3f} s   min {min(values):6.3f} s")
    help_s = statistics.median(times["python -m cli --help"])
    print(f"load average {' '.join(open('/proc/loadavg').read().split()[:3])} after the run")
    print(
        f"python -m cli --help: {help_s:.3f} s = {help_s / 0.3:.2f}x the 0.3 s target "
        f"({'met' if help_s <= 0.3 else 'NOT met'}); "
        f"{help_s / statistics.median(times['python -c pass']):.1f}x a bare interpreter start"
    )


if __name__ == "__main__":
    main()
