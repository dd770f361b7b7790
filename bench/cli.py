"""CLI start-up benchmark, hyperfine-like: each command run N times as a fresh process.

    python bench/cli.py                  # 30 runs each, results written to docs/benchmarks.md
    python bench/cli.py --runs 10 --no-write
    python bench/cli.py --src /tmp/old/src --no-write   # another checkout's quarry

Reports, per command, the median, minimum and spread (max - min) of wall time, the median CPU
time (user + system, from ``wait4``: steadier than wall time on a shared machine), and the
ratio of the median against ``python -c pass`` (the floor any Python CLI pays) and against
the peers found on PATH (``duckdb --version``, ``sqlite3 --version``). Runs of the commands
are interleaved, so a burst of load elsewhere touches all of them alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, table, write_section


@dataclass(frozen=True)
class Timing:
    label: str
    wall: list[float]
    cpu: list[float]
    exit_code: int

    @property
    def median(self) -> float:
        return statistics.median(self.wall)


def run_once(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds and exit code of one run, output discarded. A failure is timed
    too (an older checkout may lack a command) and shown beside its label."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stderr:
        proc.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime, proc.returncode


def measure(commands: dict[str, list[str]], runs: int, warmup: int, env: dict[str, str],
            cwd: Path) -> list[Timing]:
    for cmd in commands.values():
        for _ in range(warmup):  # page cache and .pyc files warm, as in daily use
            run_once(cmd, env, cwd)
    wall: dict[str, list[float]] = {k: [] for k in commands}
    cpu: dict[str, list[float]] = {k: [] for k in commands}
    codes: dict[str, int] = {}
    for _ in range(runs):
        for label, cmd in commands.items():
            w, c, codes[label] = run_once(cmd, env, cwd)
            wall[label].append(w)
            cpu[label].append(c)
    return [Timing(k, wall[k], cpu[k], codes[k]) for k in commands]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--src", type=Path, default=ROOT / "src",
                    help="The quarry source tree to measure (put first on PYTHONPATH).")
    ap.add_argument("--no-write", action="store_true", help="Print only; leave the docs.")
    args = ap.parse_args()

    env = {**os.environ, "PYTHONPATH": str(args.src.resolve())}
    quarry = [sys.executable, "-m", "quarry"]
    with tempfile.TemporaryDirectory(prefix="quarry-bench-cli-") as tmp:
        cwd = Path(tmp)
        subprocess.run([*quarry, "put", "demo", str(args.src / "quarry/demo/frankenstein.txt")],
                       env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        floor = "python -c pass"
        commands: dict[str, list[str]] = {floor: [sys.executable, "-c", "pass"]}
        peers = [f"{p} --version" for p in ("duckdb", "sqlite3") if shutil.which(p)]
        for peer in peers:
            commands[peer] = peer.split()
        for sub in ("--help", "--version", "ls", "ls --json", "info demo", "get demo 1000"):
            commands[f"quarry {sub}"] = [*quarry, *sub.split()]
        timings = measure(commands, args.runs, args.warmup, env, cwd)

    by_label = {t.label: t for t in timings}
    headers = ["command", "median ms", "min ms", "spread ms", "CPU ms (median)", "× python"]
    headers += [f"× {p.split()[0]}" for p in peers]
    rows = []
    for t in timings:
        failed = f" (exit {t.exit_code})" if t.exit_code else ""
        row = [f"`{t.label}`{failed}", f"{t.median * 1e3:.0f}", f"{min(t.wall) * 1e3:.0f}",
               f"{(max(t.wall) - min(t.wall)) * 1e3:.0f}",
               f"{statistics.median(t.cpu) * 1e3:.0f}",
               f"{t.median / by_label[floor].median:.1f}"]
        row += [f"{t.median / by_label[p].median:.1f}" for p in peers]
        rows.append(row)
    load = os.getloadavg()[0]
    body = (f"{args.runs} runs of each command after {args.warmup} warm-up runs, interleaved; "
            f"`quarry` is `{Path(sys.executable).name} -m quarry`; load average at the end "
            f"{load:.2f} on {os.cpu_count()} CPUs (wall times grow with it, CPU times much "
            f"less). The target is under 300 ms for `quarry --help` and `quarry ls` on a "
            f"quiet machine.\n\n" + table(headers, rows) + "\n")
    print(body)
    if not args.no_write:
        write_section("cli", "CLI start-up (bench/cli.py)", "python bench/cli.py", body)


if __name__ == "__main__":
    main()
