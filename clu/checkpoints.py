"""Checkpoints of a run: one file per unit and event, ``checkpoints/<safe label>/[replica-<k>/]event-NNN.pt``.

What ``--resume`` restarts from (the strategy's state and the unit's records so far) and what the audit
scans. Which are kept is the run's :data:`Policy` (``--checkpoints``), recorded in its ``units.json``.
torch is imported by these functions only, so importing this module stays light.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Literal, get_args

from clu.config import ConfigError
from clu.results import UnitSpec, unit_folder, write_atomic

__all__ = ["POLICIES", "Policy", "check_policy", "checkpoint_path", "latest_checkpoint", "load_checkpoint",
           "save_checkpoint"]

Policy = Literal["all", "last", "none"]
"""Which checkpoints a run keeps: ``all`` (every event: what ``clu audit`` scans in full), ``last`` (each unit's
latest only: enough for ``--resume``), ``none`` (a resumed run restarts its unfinished units from the start)."""
POLICIES: tuple[Policy, ...] = get_args(Policy)


def check_policy(value: Any, key: str = "--checkpoints") -> Policy:
    if value not in POLICIES:
        raise ConfigError(f"choose {', '.join(POLICIES)}, got {value!r}", key=key)
    return value


def checkpoint_path(run_dir: Path, unit: UnitSpec | str, event_index: int) -> Path:
    """``checkpoints/<safe label>/[replica-<k>/]event-NNN.pt`` (replica 1 and shadows without the replica
    folder); a plain label stands for its replica 1."""
    spec = unit if isinstance(unit, UnitSpec) else UnitSpec(unit, unit, 1, 0, 0, "strategy")
    folder = unit_folder(run_dir, "checkpoints", spec)
    if spec.replica != 1:
        folder = folder / f"replica-{spec.replica}"
    return folder / f"event-{event_index:03d}.pt"


def save_checkpoint(run_dir: Path, spec: UnitSpec | str, event_index: int, payload: dict[str, Any],
                    policy: Policy = "all") -> Path:
    """Strategy state + records so far after event ``event_index`` (atomic). With ``policy="last"`` the unit's
    earlier checkpoints are removed once this one is on disk, so a crash never leaves it without one."""
    import torch  # deferred: see the module docstring

    buf = io.BytesIO()
    torch.save({"event_index": event_index, **payload}, buf)
    path = checkpoint_path(run_dir, spec, event_index)
    write_atomic(path, buf.getvalue())
    if policy == "last":
        for older in path.parent.glob("event-*.pt"):
            if older != path:
                older.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    import torch  # deferred: see the module docstring

    return torch.load(path, map_location="cpu", weights_only=False)


def latest_checkpoint(run_dir: Path, spec: UnitSpec | str) -> Path | None:
    files = sorted(checkpoint_path(run_dir, spec, 0).parent.glob("event-*.pt"))
    return files[-1] if files else None
