"""Peak resident memory of a training process, through the command line and through Python.

    python benchmarks/memory.py           # a 2 GB float32 .npy (640,000 x 28 x 28), one epoch
                                          # each way, then rewrites the measured part of
                                          # docs/performance.md (a few minutes per run)
    python benchmarks/memory.py --quick   # a 0.2 GB file with the in-memory limit lowered

Each measurement is a child process under ``/usr/bin/time -v`` (its "Maximum resident
set size"; the parent stays small and imports neither torch nor varfam, so nothing of
it is counted):

1. ``varfam train --data big.npy --epochs 1 --no-report --quiet`` (the command line,
   including the pictures written at the end);
2. ``varfam.train(VAE.build(...), varfam.load_dataset("big.npy"), epochs=1)`` (Python);
3. Fashion-MNIST held in memory, one epoch from Python, for comparison.

The file is grey noise in [0, 1], written in pieces into a temporary folder under
``--tmp`` (default /tmp) and deleted at the end. The children run with
``OMP_NUM_THREADS=1`` (``--threads``): on a machine shared with other busy processes
torch's spinning OpenMP threads can make a step 100x slower, and the number of
threads does not change what is held in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _doc_block import write_block

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- memory.py: begin -->", "<!-- memory.py: end -->"
VARFAM = Path(sys.executable).with_name("varfam")

#: The Python side: load the file with varfam.load_dataset and train one epoch.
_PYTHON = r"""
import sys
import varfam
{setup}
data = varfam.load_dataset(sys.argv[1])
{limit}
model = varfam.VAE.build(data_shape=data.data_shape)
varfam.train(model, data, epochs=int(sys.argv[3]), out=sys.argv[2])
"""


def write_noise(path: Path, rows: int, shape: tuple[int, ...] = (28, 28)) -> int:
    """Write a float32 .npy of ``rows`` noise examples in pieces (the parent never maps it)."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
              "fortran_order": False, "shape": (rows, *shape)}
    g = np.random.default_rng(0)
    with path.open("wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for i in range(0, rows, 32768):
            f.write(g.random((min(32768, rows - i), *shape), dtype=np.float32).tobytes())
    return path.stat().st_size


#: Threads of each child (``OMP_NUM_THREADS``); set by ``--threads``.
THREADS = 1


def peak_rss(argv: list[str]) -> dict:
    """Run ``argv`` under ``/usr/bin/time -v``; its peak RSS (MB) and wall time (s)."""
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    out = subprocess.run(["/usr/bin/time", "-v", *argv], capture_output=True, text=True,
                         env=env, check=False)
    seconds = time.perf_counter() - t0
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)
    if out.returncode != 0 or found is None:
        tail = [s for s in out.stderr.splitlines() if s.strip() and not s.startswith("\t")]
        return {"error": (tail[-1] if tail else f"exit code {out.returncode}")[:200]}
    return {"peak_mb": int(found.group(1)) / 1024, "seconds": seconds}


def examples_per_second(run: Path) -> float | None:
    """The last epoch's training rate from a run's metrics.jsonl."""
    lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines() if s]
    rates = [r["samples_per_s"] for r in lines if "samples_per_s" in r]
    return rates[-1] if rates else None


def measure(tmp: Path, rows: int, quick: bool) -> list[tuple[str, dict]]:
    big = tmp / "big.npy"
    size = write_noise(big, rows)
    # the quick check lowers the in-memory limit so that its small file is streamed too
    setup = ("import varfam.data.mapped; varfam.data.mapped.IN_MEMORY_BYTES = 20_000_000"
             if quick else "")
    label = f"memory-mapped float32 .npy of {size / 1e9:.1f} GB ({rows:,} x 28 x 28), 1 epoch"
    out: list[tuple[str, dict]] = []
    try:
        if quick:  # the CLI has no switch for the limit: run its main() after lowering it
            cli = [sys.executable, "-c", f"import sys; {setup}; from varfam.cli import main; "
                   "sys.exit(main(sys.argv[1:]))"]
        else:
            cli = [str(VARFAM)]
        run = tmp / "cli"
        row = peak_rss([*cli, "train", "--data", str(big), "--epochs", "1", "--no-report",
                        "--quiet", "--out", str(run)])
        if "error" not in row:
            row["rate"] = examples_per_second(run)
        out.append((f"`varfam train`, {label}", row))
        run = tmp / "python"
        script = _PYTHON.format(setup=setup, limit="")
        row = peak_rss([sys.executable, "-c", script, str(big), str(run), "1"])
        if "error" not in row:
            row["rate"] = examples_per_second(run)
        out.append((f"`varfam.train`, {label}", row))
    finally:
        big.unlink(missing_ok=True)
    run = tmp / "fashion"
    limit = "data = data.limit(10_000)" if quick else ""
    script = _PYTHON.format(setup="", limit=limit)
    row = peak_rss([sys.executable, "-c", script, "fashion-mnist", str(run), "1"])
    if "error" not in row:
        row["rate"] = examples_per_second(run)
    out.append(("`varfam.train`, Fashion-MNIST held in memory (60,000 x 28 x 28), 1 epoch", row))
    return out


def render(rows: list[tuple[str, dict]], quick: bool) -> str:
    import varfam

    lines = [
        f"Measured by `python benchmarks/memory.py{' --quick' if quick else ''}` on "
        f"{time.strftime('%Y-%m-%d')}: varfam {varfam.__version__}, {platform.machine()} "
        f"with {os.cpu_count()} logical CPUs, {THREADS} thread(s) per process "
        "(`OMP_NUM_THREADS`; the machine was shared with other jobs, so the wall times and "
        "rates are not speed measurements). Peak resident set size of the "
        "training process (`/usr/bin/time -v`), default model (MLP 400, D = 20), batch 128.",
        "",
        "| training | peak RSS (MB) | wall time (s) | examples/s |",
        "|---|---:|---:|---:|",
    ]
    for label, r in rows:
        if "error" in r:
            lines.append(f"| {label} | error: {r['error']} | | |")
            continue
        rate = f"{r['rate']:,.0f}" if r.get("rate") else "–"
        lines.append(f"| {label} | {r['peak_mb']:,.0f} | {r['seconds']:.0f} | {rate} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 0.2 GB file (about a minute)")
    ap.add_argument("--rows", type=int, help="examples in the file (default 640,000)")
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="where the file is written")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each child")
    ap.add_argument("--no-doc", action="store_true", help="print only; leave the doc alone")
    args = ap.parse_args()
    global THREADS
    THREADS = args.threads
    if shutil.which("/usr/bin/time") is None:
        sys.exit("this benchmark needs /usr/bin/time (apt-get install time)")
    rows = args.rows or (64_000 if args.quick else 640_000)
    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="varfam-memory-") as tmp:
        results = measure(Path(tmp), rows, args.quick)
    block = render(results, args.quick)
    print(block)
    if not args.no_doc and not args.quick:
        write_block(DOC, BEGIN, END, block, heading="### Peak memory (benchmarks/memory.py)")
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
