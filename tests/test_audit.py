"""The privacy audit ``clu audit DIR`` (DESIGN §12, issue 7).

Hand-made run folders pin down the rules (what counts as a stored id, re-learning, the artefacts scanned,
no false positives from integers that are not sample ids); two end-to-end runs (every task-agnostic strategy,
and the task-aware ones) show that untouched runs pass and that one forgotten id injected into a later
checkpoint's buffer fails the audit, naming the id and the file; a throw-away strategy registered for one
test shows that the naming rule alone finds ids a new strategy keeps under a new key.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from tiny import TINY

import clu
import clu.audit
from clu import resolve_config
from clu.audit import audit_run, stored_ids
from clu.cli import main
from clu.config import ConfigError
from clu.events import LearnTask, UnlearnRequest, to_json
from clu.paths import SCENARIO_DIR
from clu.checkpoints import load_checkpoint, save_checkpoint
from clu.strategies import STRATEGIES, ReplayConfig, StrategyEntry, register
from clu.strategies.er import ER

# one worker runs this module: the end-to-end runs (a module fixture) are then made once, not once per worker
pytestmark = pytest.mark.xdist_group("audit")

# A hand-made stream: learn ids 0-9 (classes 0, 1); forget class 1 (ids 5-9) at step 1; learn ids 10-14 at
# step 2; forget id 10 at step 3; learn ids 5-9 again at step 4 (as a task-aware T, F, then R would).
EVENTS = [
    LearnTask(0, 0, (0, 1), tuple(range(10))),
    UnlearnRequest(1, "class", (1,), (5, 6, 7, 8, 9), 0),
    LearnTask(2, 1, (2,), tuple(range(10, 15))),
    UnlearnRequest(3, "random_sample", (), (10,), 1),
    LearnTask(4, 2, (1,), (5, 6, 7, 8, 9)),
]
FORGOTTEN_AFTER = [set(), {5, 6, 7, 8, 9}, {5, 6, 7, 8, 9}, {5, 6, 7, 8, 9, 10}, {10}]
RETAINED_AFTER = [set(range(10)), {0, 1, 2, 3, 4}, {0, 1, 2, 3, 4, *range(10, 15)}, {0, 1, 2, 3, 4, 11, 12, 13, 14},
                  {*range(10), 11, 12, 13, 14}]


def _strategy_state(k: int) -> dict[str, Any]:
    """A checkpoint's strategy state after event k that is clean, but full of integers that are not ids."""
    kept = sorted(RETAINED_AFTER[k])
    return {
        "model": {"net.1.weight": torch.zeros(3, 3), "net.1.bias": torch.arange(10)},  # integer tensor, not ids
        "optimizer": {"state": {i: {"momentum_buffer": torch.zeros(3)} for i in range(12)},
                      "param_groups": [{"params": list(range(12)), "lr": 0.05}]},
        "buffer": {"ids": kept[:6], "labels": [0] * len(kept[:6]), "seen": 7},
        "torch_rng": torch.arange(16, dtype=torch.uint8),
        "np_rng": {"bit_generator": "PCG64", "state": {"state": 5, "inc": 9}, "has_uint32": 0, "uinteger": 6},
        "known_classes": [0, 1, 2, 5, 6, 7, 8, 9, 10],
        "retained_ids": kept,
        "sides": {5: {"w": torch.zeros(2)}, 10: {"w": torch.zeros(2)}},
    }


def _records(k: int) -> list[dict[str, Any]]:
    return [{"step": j, "kind": "learn", "values": {"TA": 0.5}, "per_task": {5: 0.5, 10: 0.4}, "time_s": 0.1,
             "forget_probs": torch.zeros(0, 3)} for j in range(k + 1)]


def make_run(root: Path, labels: tuple[str, ...] = ("retrain", "er")) -> Path:
    """A clean run folder in the runner's layout, without running anything."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "events.jsonl").write_text("".join(to_json(e) + "\n" for e in EVENTS))
    (root / "config.toml").write_text(
        "seed = 0\n[scenario]\nname = 't'\n[scenario.split]\ntasks = [[0, 1], [5, 6], [10]]\n"
        + "".join(f'\n[[strategies]]\nstrategy = "{lab}"\nlabel = "{lab}"\n' for lab in labels)
    )
    for lab in labels:
        for k in range(len(EVENTS)):
            save_checkpoint(root, lab, k, {"strategy": _strategy_state(k), "records": _records(k), "error": None})
    per_event = [{"step": k, "kind": "learn", "FA": None if not FORGOTTEN_AFTER[k] else 0.1} for k in range(5)]
    summary = {"scenario": "t", "seed": 0, "strategies": {
        lab: {"name": lab, "final": {"TA": 0.9, "FA": 0.1, "per_task_5": 5}, "per_event": per_event} for lab in labels}}
    (root / "summary.json").write_text(json.dumps(summary))
    (root / "metrics.csv").write_text("strategy,seed,step,event_kind,metric,value\ner,0,1,class,FA,5\n")
    (root / "timings.csv").write_text("strategy,seed,step,event_kind,time_s\ner,0,1,class,5\n")
    (root / "plots").mkdir(exist_ok=True)
    (root / "plots" / "forgetting.png").write_bytes(b"\x89PNG 5 6 7 8 9")
    return root


def _edit(path: Path, fn: Any) -> None:
    payload = load_checkpoint(path)
    fn(payload)
    k = payload.pop("event_index")
    save_checkpoint(path.parent.parent.parent, path.parent.name, k, payload)


def _cli(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue() + err.getvalue()


# ------------------------------------------------------------------------------------- hand-made runs


def test_clean_handmade_run_passes_despite_integers_everywhere(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    report = audit_run(run)
    assert report.ok, report.render()
    assert report.checkpoints == 10 and report.requests == 2
    rc, text = _cli("audit", str(run))
    assert rc == 0 and "audit: ok" in text.splitlines()[-1]


def test_forgotten_id_in_a_later_buffer_fails_naming_id_and_file(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    _edit(run / "checkpoints/er/event-002.pt", lambda p: p["strategy"]["buffer"]["ids"].append(7))
    report = audit_run(run)
    assert not report.ok
    [f] = report.findings
    assert f.ids == (7,) and f.file == "checkpoints/er/event-002.pt" and f.where == "strategy.buffer.ids"
    rc, text = _cli("audit", str(run))
    assert rc == 1
    assert "forgotten id 7" in text and "checkpoints/er/event-002.pt" in text
    assert "forgotten id 7 in checkpoints/er/event-002.pt" in text.splitlines()[-1]


def test_ids_before_their_request_and_after_relearning_are_allowed(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    # event 0: ids 5-9 not yet forgotten; event 4: re-learned (forgotten at 1, learned again at 4)
    for k in (0, 4):
        _edit(run / f"checkpoints/er/event-{k:03d}.pt", lambda p: p["strategy"]["buffer"]["ids"].extend([5, 9]))
    assert audit_run(run).ok
    # but id 10, forgotten at step 3 and never re-learned, may not come back at step 4
    _edit(run / "checkpoints/retrain/event-004.pt", lambda p: p["strategy"]["retained_ids"].append(10))
    report = audit_run(run)
    assert [(f.file, f.ids) for f in report.findings] == [("checkpoints/retrain/event-004.pt", (10,))]


@pytest.mark.parametrize(
    "where, inject",
    [
        ("strategy.retained_ids", lambda s: s.__setitem__("retained_ids", s["retained_ids"] + [6])),
        ("strategy.task_sample_ids", lambda s: s.__setitem__("task_sample_ids", [[0, 1], [2, 6]])),
        ("strategy.logits_by_id", lambda s: s.__setitem__("logits_by_id", {0: torch.zeros(3), 6: torch.zeros(3)})),
        ("strategy.forget_ids", lambda s: s.__setitem__("forget_ids", torch.tensor([6]))),
        ("strategy.extra.logits_by_id", lambda s: s.__setitem__("extra", {"logits_by_id": {6: [0.1]}})),
    ],
)
def test_every_kind_of_id_store_is_scanned(tmp_path: Path, where: str, inject: Any) -> None:
    run = make_run(tmp_path / "run")
    _edit(run / "checkpoints/retrain/event-003.pt", lambda p: inject(p["strategy"]))
    report = audit_run(run)
    assert [(f.where, f.ids) for f in report.findings] == [(where, (6,))]


def test_text_artefacts_are_scanned_but_not_events_or_metrics(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    summary["strategies"]["er"]["final"]["sample_ids"] = [1, 10]
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "extra.csv").write_text("sample_id,value\n3,0.5\n8,0.2\n10,0.1\n")  # 8: forgotten, then re-learned
    report = audit_run(run)
    found = sorted((f.file, f.where, f.ids) for f in report.findings)
    assert found == [("extra.csv", "column sample_id", (10,)),
                     ("summary.json", "strategies.er.final.sample_ids", (10,))]


def test_final_fa_must_be_reported(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    summary["strategies"]["er"]["final"]["FA"] = None
    del summary["strategies"]["retrain"]
    (run / "summary.json").write_text(json.dumps(summary))
    report = audit_run(run)
    assert sorted(f.where for f in report.findings) == ["strategies.er.final.FA", "strategies.retrain"]
    (run / "summary.json").unlink()
    assert [f.file for f in audit_run(run).findings] == ["summary.json"]


def test_a_strategy_stopped_before_any_request_needs_no_fa(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    summary["strategies"]["er"] = {"name": "er", "final": {}, "per_event": [{"step": 0, "kind": "learn"}],
                                   "error": "stopped at step 1 (class): diverged"}
    (run / "summary.json").write_text(json.dumps(summary))
    assert audit_run(run).ok


def test_unreadable_and_leftover_files_fail_closed(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    (run / "checkpoints/er/event-003.pt").write_bytes(b"not a checkpoint")
    (run / "checkpoints/er/.event-004.pt.x1y2.tmp").write_bytes(b"half")
    report = audit_run(run)
    assert sorted(f.file for f in report.findings) == ["checkpoints/er/.event-004.pt.x1y2.tmp",
                                                       "checkpoints/er/event-003.pt"]
    assert "interrupted" in report.render()


def test_not_a_run_folder_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such run folder"):
        audit_run(tmp_path / "missing")
    rc, text = _cli("audit", str(tmp_path))
    assert rc == 2 and text.strip() == f"clu: error: {tmp_path}: not a run folder (no events.jsonl)"
    (tmp_path / "events.jsonl").write_text("{broken\n")
    rc, text = _cli("audit", str(tmp_path))
    assert rc == 2 and "line 1 is not an event" in text and "Traceback" not in text


def test_stored_ids_rules() -> None:
    obj = {"ids": [1, [2, 3]], "a_ids": torch.tensor([4]), "by": {"x_by_id": {"5": 0}}, "tasks": [[6]],
           "labels": [7], "known_classes": [8], "weights": torch.tensor([9.0]), "bools_ids": [True]}
    assert dict(stored_ids(obj)) == {"ids": [1, 2, 3], "a_ids": [4], "by.x_by_id": [5], "bools_ids": []}
    assert dict(stored_ids({"task_sample_ids": [[6], [7]]}, "strategy")) == {"strategy.task_sample_ids": [6, 7]}
    # one rule everywhere: a checkpoint's strategy state gets no key of its own
    assert dict(stored_ids({"retained": [6], "stored_logits": {6: 0.1}}, "strategy")) == {}


# ------------------------------------------------------------------------------------ end to end


def _scenario(tmp: Path, name: str) -> Path:
    text = (SCENARIO_DIR / f"{name}.toml").read_text().replace("epochs = 5", "epochs = 1")
    path = tmp / f"{name}.toml"
    path.write_text(text)
    return path


SHADOWS = 2


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every strategy on digits-class (task-agnostic) and the task-aware ones on digits-task-aware; two shadow
    oracles (their margins files are scanned like the rest; eight would only repeat them)."""
    tmp = tmp_path_factory.mktemp("audit-runs")
    agnostic = [n for n, e in STRATEGIES.items() if not e.task_aware_only]
    aware = ["clpu_derpp", "retrain_stream", "er"]
    out = {}
    for name, strategies in (("digits-class", agnostic), ("digits-task-aware", aware)):
        cfg = resolve_config(str(_scenario(tmp, name)), strategies, 1, "cpu", shadows=SHADOWS)
        out[name] = clu.run(cfg, out=tmp / name, make_plots=False).out
    return out


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["digits-class", "digits-task-aware"])
def test_untouched_runs_of_every_strategy_pass(real_runs: dict[str, Path], scenario: str) -> None:
    run = real_runs[scenario]
    report = audit_run(run)
    assert report.ok, report.render()
    labels = {p.name for p in (run / "checkpoints").iterdir()}
    extra = {"retrain-twin", *(f"retrain-shadow-{j}" for j in range(1, SHADOWS + 1))}  # the floor, the shadows
    assert {p.name for p in (run / "margins").iterdir()} == labels  # margins files are scanned like the rest
    if scenario == "digits-class":
        assert labels == {n for n, e in STRATEGIES.items() if not e.task_aware_only} | extra
    else:
        assert labels == {"retrain", "clpu_derpp", "retrain_stream", "er"} | extra
        # clpu_derpp's per-id store is really there to be scanned
        last = sorted((run / "checkpoints/clpu_derpp").glob("*.pt"))[-1]
        assert load_checkpoint(last)["strategy"]["logits_by_id"]
    assert report.checkpoints == sum(1 for _ in run.rglob("event-*.pt"))
    rc, text = _cli("audit", str(run))
    assert rc == 0, text


@pytest.mark.slow
def test_injected_forgotten_id_in_a_real_checkpoint_fails(real_runs: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(real_runs["digits-class"], run)
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    request = next(e for e in events if e["type"] == "unlearn")
    victim = request["sample_ids"][0]
    later = run / "checkpoints" / "ugclu" / f"event-{request['step'] + 2:03d}.pt"

    def inject(p: dict[str, Any]) -> None:
        p["strategy"]["buffer"]["ids"].append(victim)
        p["strategy"]["buffer"]["labels"].append(0)

    _edit(later, inject)
    rc, text = _cli("audit", str(run))
    assert rc == 1
    rel = later.relative_to(run).as_posix()
    assert f"forgotten id {victim} (request {request['request_id']}, step {request['step']}) found in {rel}" in text


# ------------------------------------------------------------------------- a strategy the audit never saw


class _SeenIdsER(ER):
    """ER that also keeps every id its buffer ever held under a new key, ``seen_ids``, and never drops the
    forgotten ones: a leak in a store that ``clu/audit.py`` does not name."""

    name = "test_seen_ids_er"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen: set[int] = set()

    def state_dict(self) -> dict[str, Any]:
        self.seen |= {int(i) for i in self.buffer.ids()}
        return {**super().state_dict(), "seen_ids": sorted(self.seen)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.seen = set(state["seen_ids"])


@pytest.fixture
def seen_ids_er() -> Iterator[str]:
    """``_SeenIdsER`` in the registry for one test only."""
    entry = register(StrategyEntry(_SeenIdsER.name, "test only: ER that leaks the ids it saw", ReplayConfig,
                                   _SeenIdsER))
    try:
        yield entry.name
    finally:
        del STRATEGIES[entry.name]


@pytest.mark.slow
def test_a_new_strategys_ids_key_is_audited_without_changing_the_audit(seen_ids_er: str, tmp_path: Path) -> None:
    assert "seen_ids" not in Path(clu.audit.__file__).read_text()  # the audit knows nothing of this key
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    out = clu.run(resolve_config(str(scenario), [seen_ids_er], 0, "cpu"), out=tmp_path / "run",
                  make_plots=False, checkpoints="all").out
    forgotten = {i for line in (out / "events.jsonl").read_text().splitlines()
                 if (e := json.loads(line))["type"] == "unlearn" for i in e["sample_ids"]}
    report = audit_run(out)
    assert report.findings, report.render()
    for f in report.findings:  # only the new key leaks: the buffer and the oracle are clean
        assert f.file.startswith(f"checkpoints/{seen_ids_er}/") and f.where == "strategy.seen_ids"
        assert set(f.ids) <= forgotten
    rc, text = _cli("audit", str(out))
    assert rc == 1 and f"checkpoints/{seen_ids_er}/" in text
