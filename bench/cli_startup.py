"""How long the command line takes to answer before any model work: ``--help``, ``models``.

Each command runs in a fresh process (``python -m emotion2vec_plus.cli ...``, as the console script
does) ``--repeats`` times after one warm-up; the table gives the median and the fastest wall time,
and whether PyTorch was imported. ``--src DIR`` measures another checkout's ``src`` (e.g. an
older commit in a git worktree) with this Python.

Usage: python bench/cli_startup.py [--repeats 10] [--src ../old/src]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_name  # bench/ is on sys.path when a script runs

COMMANDS = [["--help"], ["predict", "--help"], ["models"], ["models", "--json"]]
# Runs the CLI's main() in-process and then reports whether torch got imported, for the last column.
PROBE = ("import sys, runpy, contextlib, io\n"
         "sys.argv = ['emotion2vec-plus', *sys.argv[1:]]\n"
         "with contextlib.redirect_stdout(io.StringIO()):\n"
         "    try:\n"
         "        runpy.run_module('emotion2vec_plus.cli', run_name='__main__')\n"
         "    except SystemExit:\n"
         "        pass\n"
         "print('torch' in sys.modules)\n")


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "emotion2vec_plus.cli", *command], env=env, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--src", default=None, help="a src/ folder to import emotion2vec_plus from")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = str(Path(args.src).resolve()) + os.pathsep + env.get("PYTHONPATH", "")
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; Python {sys.version.split()[0]}; "
          f"{args.repeats} runs each after a warm-up; src: {args.src or 'installed package'}\n")
    print("| command | median | fastest | imports PyTorch |")
    print("|---|---:|---:|---|")
    for command in COMMANDS:
        timed(command, env)
        times = [timed(command, env) for _ in range(args.repeats)]
        probe = subprocess.run([sys.executable, "-c", PROBE, *command], env=env, capture_output=True, text=True)
        torch = probe.stdout.strip().splitlines()[-1] if probe.stdout.strip() else "?"
        print(f"| `emotion2vec-plus {' '.join(command)}` | {statistics.median(times):.2f} s | {min(times):.2f} s | "
              f"{'yes' if torch == 'True' else 'no' if torch == 'False' else torch} |", flush=True)


if __name__ == "__main__":
    main()
