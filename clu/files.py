"""Atomic writes, exact number cells and the output folder: how every result file reaches the disk.

Every file is written to a temporary name in the same folder and renamed, so a reader (or a crash) never
sees half a file. Re-exported by :mod:`clu.results`, the schema that uses them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from clu.config import ConfigError


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux ``/proc``): setting it to
    read it back would briefly give files created meanwhile by other threads the wrong mode."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain ``open()`` would give a new file: 0o666 less the umask (0o644 under umask 022)."""
    return 0o666 & ~current_umask()


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename.

    The temporary file (created private by ``mkstemp``) gets the umask's mode before the rename, so result
    files are as readable as any other file the user creates (a shared ``--out`` on a cluster)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def format_value(v: float | None) -> str:
    """CSV cell of a metric: exact repr of the float, empty for a metric that does not apply."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return repr(float(v))


def clean(v: Any) -> float | None:
    """A metric as stored: a finite float or None."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def csv_text(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def check_out(path: Path, *, resume: bool = False) -> None:
    """The checks of :func:`prepare_out` that need no writing: bad arguments leave no folder behind."""
    if path.exists() and not path.is_dir():
        raise ConfigError("--out exists and is not a folder", file=path)
    if not resume and path.is_dir() and any(path.iterdir()):
        raise ConfigError("--out is not empty; choose a new folder (or --resume it)", file=path)
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"--out cannot be created: {parent} is not a folder", file=path)
    probe_writable(parent, path)


def probe_writable(folder: Path, out: Path) -> None:
    """Create and remove a temporary file in ``folder``: the one check that also holds for root (who passes
    ``os.access``), read-only mounts and pseudo file systems. ``out`` is the ``--out`` the message names."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".clu-write-test.", dir=folder)
    except OSError as e:
        where = "" if folder == out else f" (cannot create files in {folder})"
        raise ConfigError(f"--out is not writable ({e.strerror}){where}", file=out) from None
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)


def prepare_out(path: Path, *, resume: bool = False) -> Path:
    """Create the results folder; refuse a non-empty one unless resuming, and an unwritable one.

    Resuming removes the temporary files a killed run may have left behind (half-written checkpoints).
    """
    check_out(path, resume=resume)
    if resume and path.is_dir():
        for stale in path.rglob(".*.tmp"):
            stale.unlink(missing_ok=True)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"--out is not writable ({e.strerror})", file=path) from None
    return path
