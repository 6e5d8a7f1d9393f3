"""Each notebook's Run All, as a learner gets it: wall time and the kernel's peak memory.

    .venv/bin/python benchmarks/bench_notebooks.py [NOTEBOOK ...] [--threads N] [--onednn off]

Runs each notebook top to bottom in a fresh kernel (nbclient, as JupyterLab's Run All), then reads the
kernel's peak resident memory (VmHWM, Linux) from inside it. Goals (issue K): every notebook ≤ 60 s and
≤ 1.5 GiB peak on 2 cores (mybinder.org gives 2 GB for the server and the kernel together), the series
≤ 4 min. --threads sets TF_NUM_INTRAOP_THREADS and --onednn TF_ENABLE_ONEDNN_OPTS in the kernel: another
thread layout or kernel library changes float reduction orders, as another machine would.
The stored notebooks are not modified.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
PEAK_CELL = ("import json\nwith open('/proc/self/status') as status:\n"
             "    print(json.dumps({line.split(':')[0]: int(line.split()[1]) for line in status\n"
             "                      if line.startswith(('VmHWM', 'VmRSS'))}))")
GOAL_SECONDS, GOAL_GIB, SERIES_SECONDS = 60, 1.5, 240


def run(path: Path, env: dict) -> tuple[float, float]:
    """(seconds of Run All, the kernel's peak RSS in GiB) for the notebook at ``path``."""
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(PEAK_CELL))
    client = NotebookClient(notebook, kernel_name="python3", timeout=900,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute(env=env)  # passed on to the kernel's start
    seconds = time.perf_counter() - start
    output = notebook.cells[-1].outputs[0]["text"]
    return seconds, json.loads(output)["VmHWM"] / 2 ** 20


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--threads", type=int, help="TF_NUM_INTRAOP_THREADS in the kernel")
    parser.add_argument("--onednn", choices=["on", "off"], help="TF_ENABLE_ONEDNN_OPTS in the kernel")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.threads:
        env["TF_NUM_INTRAOP_THREADS"] = str(args.threads)
    if args.onednn:
        env["TF_ENABLE_ONEDNN_OPTS"] = "1" if args.onednn == "on" else "0"
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    print(f"Run All in a fresh kernel, {os.cpu_count()} cores"
          + (f", TF_NUM_INTRAOP_THREADS={args.threads}" if args.threads else "")
          + (f", oneDNN {args.onednn}" if args.onednn else ""), flush=True)
    print(f"  {'notebook':<40} {'seconds':>8} {'peak GiB':>9}", flush=True)
    total, missed = 0.0, []
    for path in paths:
        seconds, peak = run(path, env)
        total += seconds
        flags = [f"> {GOAL_SECONDS} s"] * (seconds > GOAL_SECONDS) + [f"> {GOAL_GIB} GiB"] * (peak > GOAL_GIB)
        missed += [f"{path.name}: {', '.join(flags)}"] if flags else []
        print(f"  {path.name:<40} {seconds:8.1f} {peak:9.2f}  {'MISSED ' + ', '.join(flags) if flags else ''}",
              flush=True)
    print(f"  {'series':<40} {total:8.1f}   (goal ≤ {SERIES_SECONDS} s: {'met' if total <= SERIES_SECONDS else 'MISSED'})")
    print("goals (each ≤ 60 s and ≤ 1.5 GiB):", "met" if not missed else "MISSED: " + "; ".join(missed))


if __name__ == "__main__":
    sys.exit(main())
