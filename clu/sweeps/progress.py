"""Trial outcomes as the executors report them, and the progress lines on stderr.

One line per finished trial, ``[k/N] scenario label seed=s[ r=k]  TA=.. AvgGap=.. (t s)`` (``r=k`` for
replica k > 1; TA in %, AvgGap in points, to the oracle of the same replica; ``AvgGap=-`` while that oracle
has not finished; the attack's figures wait for the aggregation), and one per failed attempt.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from clu.sweeps.join import trial_avg_gap
from clu.sweeps.plan import Trial, read_done


@dataclass
class Outcome:
    trial: Trial
    ok: bool
    attempts: int
    error: str | None = None
    """Why it failed (ok False) or diverged (ok True)."""


class Progress:
    """Collects trial outcomes; prints one line per finished trial (and per retry) on stderr."""

    def __init__(self, out: Path, trials: Sequence[Trial], retries: int, show: bool) -> None:
        self.out, self.total, self.retries, self.show = out, len(trials), retries, show
        self.by_id = {t.id: t for t in trials}
        self.outcomes: dict[str, Outcome] = {}
        self.attempts: dict[str, int] = defaultdict(int)
        """Attempts ended so far, per trial id."""

    def _print(self, text: str) -> None:
        if self.show:
            print(text, file=sys.stderr, flush=True)

    def retry(self, trial_id: str, error: str | None) -> None:
        self.attempts[trial_id] += 1
        t = self.by_id[trial_id]
        self._print(f"      {_name(t)}: attempt {self.attempts[trial_id]} of {self.retries + 1} failed "
                    f"({error or 'error'}); retrying")

    def finished(self, trial_id: str, done: dict[str, Any] | None = None) -> None:
        """``done``: the marker as the worker reported it (on a cluster, shared storage may show the file late)."""
        t = self.by_id[trial_id]
        if done is None or done.get("fingerprint") != t.fingerprint:
            done = read_done(t.folder(self.out), t.fingerprint)
        if done is None:  # reported done by the executor but no marker: treat as failed
            self.failed(trial_id, "finished without writing done.json")
            return
        self.attempts[trial_id] += 1
        self.outcomes[trial_id] = Outcome(t, True, self.attempts[trial_id], done.get("error"))
        ta = done["final"].get("TA")
        ta_text = "-" if ta is None else f"{100 * ta:.1f}"
        if t.unit.role in ("oracle", "shadow"):
            gap_text = f"({t.unit.role})"
        else:
            gap = trial_avg_gap(self.out, t)
            gap_text = "AvgGap=-" if gap is None else f"AvgGap={100 * gap:.2f}"
        note = f"  diverged: {done['error']}" if done.get("error") else ""
        self._print(f"[{len(self.outcomes)}/{self.total}] {_name(t)}  TA={ta_text} {gap_text} "
                    f"({done['elapsed_s']:.1f} s){note}")

    def failed(self, trial_id: str, error: str | None) -> None:
        t = self.by_id[trial_id]
        self.attempts[trial_id] += 1
        error = last_error(t.folder(self.out)) or error or "unknown error"
        self.outcomes[trial_id] = Outcome(t, False, self.attempts[trial_id], error)
        self._print(f"[{len(self.outcomes)}/{self.total}] {_name(t)}  FAILED after "
                    f"{self.attempts[trial_id]} attempt(s): {error}")


def _name(t: Trial) -> str:
    return f"{t.scenario} {t.strategy} seed={t.seed}" + (f" r={t.replica}" if t.replica != 1 else "")


def last_error(folder: Path) -> str | None:
    """The last line of a trial's ``error.txt`` (the exception), if any."""
    try:
        lines = [x for x in (folder / "error.txt").read_text().splitlines() if x.strip()]
    except OSError:
        return None
    return lines[-1].strip() if lines else None
