"""Shared helpers of the benchmark scripts: machine and commit stamps, load average, medians, markdown.

Every benchmark prints progress on stderr and one markdown block on stdout (or into ``--md FILE``);
``bench/run_all.py`` collects the blocks into one dated section of ``bench/RESULTS.md``. A block states each
figure next to its target and the 1-minute load average sampled while it was measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
VENV_BIN = Path(sys.executable).parent


def say(*parts: object) -> None:
    """Progress on stderr (stdout carries the markdown block)."""
    print(*parts, file=sys.stderr, flush=True)


def load() -> str:
    """The 1-, 5- and 15-minute load averages, e.g. ``'2.10 3.05 3.40'``."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())


def load1() -> str:
    """The 1-minute load average alone (what a table cell shows)."""
    return load().split()[0]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return None


def gpu() -> str | None:
    """The GPU's name when torch sees one, else None."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})"
    except Exception:  # noqa: BLE001 - a broken CUDA set-up is "no GPU" for the record
        pass
    return None


def commit() -> str:
    """``git rev-parse --short HEAD``, plus ``+dirty`` when the working tree has changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for mod in ("torch", "avalanche", "ray"):
        try:
            from importlib.metadata import version

            dist = {"avalanche": "avalanche-lib"}.get(mod, mod)
            parts.append(f"{mod} {version(dist)}")
        except Exception:  # noqa: BLE001
            pass
    return ", ".join(parts)


def machine_line() -> str:
    mem = memory_gib()
    g = gpu()
    return (f"{cpu_model()}, {cores()} cores" + (f", {mem:.0f} GiB RAM" if mem else "")
            + f", GPU: {g if g else 'none'}; {versions()}")


def median(xs: Iterable[float]) -> float:
    return statistics.median(list(xs))


def quartiles(xs: Sequence[float]) -> tuple[float, float]:
    """(25th, 75th) percentile; both the value itself for fewer than two samples."""
    xs = list(xs)
    if len(xs) < 2:
        return (xs[0], xs[0]) if xs else (float("nan"), float("nan"))
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def pct(x: float | None, digits: int = 1) -> str:
    """Accuracy (fraction) as points, e.g. 0.0312 → '3.1'."""
    return "–" if x is None else f"{100 * x:.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str | None = None) -> str:
    """A markdown table; ``align`` is one character per column, 'l' or 'r' (default: first l, rest r)."""
    align = align or ("l" + "r" * (len(header) - 1))
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def section_header(title: str = "") -> str:
    stamp = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (f"## {stamp} — commit {commit()}{(' — ' + title) if title else ''}\n\n"
            f"Machine: {machine_line()}.\n")


def append_section(body: str, title: str = "") -> None:
    """Append one dated section (header + body) to bench/RESULTS.md, atomically (temp file + rename)."""
    old = RESULTS.read_text() if RESULTS.exists() else (
        "# Benchmark results\n\nOne section per `make bench` (or per benchmark run alone with `--record`), newest "
        "last. Ratios are measured side by side in one run; see `bench/README.md` for what each figure means.\n")
    write_atomic(RESULTS, old.rstrip("\n") + "\n\n" + section_header(title) + "\n" + body.rstrip("\n") + "\n")


def parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--md", type=Path, default=None, help="write the markdown block to this file (run_all uses it)")
    p.add_argument("--record", action="store_true",
                   help="also append the block as a dated section of bench/RESULTS.md")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats: a smoke test, not a figure")
    p.add_argument("--json", type=Path, default=None, help=argparse.SUPPRESS)  # run_all's headline figures
    return p


def headline(figure: str, value: str, target: str, met: bool | None, load: str = "") -> dict[str, object]:
    """One row of run_all's summary table."""
    return {"figure": figure, "value": value, "target": target, "met": met, "load": load}


def emit(block: str, args: argparse.Namespace, title: str, headlines: Sequence[dict[str, object]] = ()) -> None:
    """Print the block, write it to ``--md`` (and headline figures to ``--json``), and append it to
    RESULTS.md with ``--record``."""
    print(block)
    if args.md is not None:
        write_atomic(args.md, block)
    if args.json is not None:
        import json

        write_atomic(args.json, json.dumps(list(headlines)))
    if args.record:
        append_section(block, title)
        say(f"appended to {RESULTS}")


def quiet_warnings() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
