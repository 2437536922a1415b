"""Reliability (DESIGN §12, issue 7): bad input, resume after SIGKILL, determinism, divergence.

Bad input runs in-process through ``clu.cli.main`` (fast). The end-to-end tests use a copy of digits-class
with one epoch per task and are marked slow; one of them SIGKILLs a real ``clu run`` subprocess.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import clu
from clu import resolve_config
from clu.cli import check_resume_args, main
from clu.config import ConfigError
from clu.paths import SCENARIO_DIR
from clu.runconfig import load_run_config

_SCRIPT = Path(sys.executable).with_name("clu")
CLU = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "clu.cli"]
DIGITS_CLASS = (SCENARIO_DIR / "digits-class.toml").read_text()


def cli(*argv: str | Path) -> tuple[int, str, str]:
    """``clu ARGV`` in-process: (status, stdout, stderr); an argparse error is status 2 like the console."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as e:
            rc = int(e.code or 0)
    return rc, out.getvalue(), err.getvalue()


def fast_scenario(folder: Path, text: str = DIGITS_CLASS, name: str = "digits-class.toml") -> Path:
    path = folder / name
    path.write_text(text.replace("epochs = 5", "epochs = 1"))
    return path


# -------------------------------------------------------------------------------------------- bad input


def _bad_files(tmp: Path) -> dict[str, Path]:
    files = {
        "unknown_key_preset": ('strategy = "er"\nlr = 0.1\nlearning_rate = 3\n', "preset.toml"),
        "negative_lr_preset": ('strategy = "er"\nlr = -1.0\n', "neg.toml"),
        "nameless_preset": ("lr = 0.1\n", "nameless.toml"),
        "unknown_strategy_preset": ('strategy = "er_gaa"\n', "gaa.toml"),
        "broken_preset": ('strategy = "er\n', "broken.toml"),
        "never_learned": (
            DIGITS_CLASS.replace('class_order = "seeded"', 'class_order = "natural"')
            .split("[[schedule.rules]]")[0]
            + '[[schedule.requests]]\nafter_task = 1\nkind = "class"\nclasses = [7]\n',
            "never.toml",
        ),
        "no_such_class": (
            DIGITS_CLASS.replace('class_order = "seeded"', 'class_order = "natural"')
            .split("[[schedule.rules]]")[0]
            + '[[schedule.requests]]\nafter_task = 5\nkind = "cross_task"\nclasses = [1, 12]\n',
            "noclass.toml",
        ),
        "wrong_type": (DIGITS_CLASS.replace("n_tasks = 5", 'n_tasks = "five"'), "wrongtype.toml"),
        "broken_scenario": (DIGITS_CLASS + "\n[split\n", "broken-scenario.toml"),
    }
    out = {}
    for key, (text, name) in files.items():
        (tmp / name).write_text(text)
        out[key] = tmp / name
    (tmp / "a-file").write_text("")
    (tmp / "full").mkdir()
    (tmp / "full" / "something").write_text("x")
    return out


# (argv with {OUT} for the --out folder and {name} for the files above, what the message must name)
BAD_RUNS = {
    "negative_seed": (["run", "--seed", "-1"], "seed must be >= 0, got -1"),
    "seed_not_a_number": (["run", "--seed", "x1"], "seed must be a whole number"),
    "unknown_strategy": (["run", "--strategy", "ugcl"], "unknown strategy 'ugcl'"),
    "unknown_device": (["run", "--device", "tpu"], "invalid choice: 'tpu'"),
    "missing_scenario": (["run", "{tmp}/nope.toml"], "nope.toml: no such scenario file"),
    "unknown_scenario_name": (["run", "digits-klass"], "unknown scenario 'digits-klass'"),
    "missing_strategy_file": (["run", "--strategy", "{tmp}/nope.toml"], "nope.toml: no such file"),
    "out_not_writable": (["run", "--out", "{tmp}/a-file/run"], "a-file is not a folder"),
    "out_not_empty": (["run", "--out", "{tmp}/full"], "--out is not empty"),
    "unknown_key_preset": (["run", "--strategy", "{unknown_key_preset}"], "preset.toml: learning_rate: unknown key"),
    "negative_lr_preset": (["run", "--strategy", "{negative_lr_preset}"], "neg.toml: lr: must be > 0, got -1.0"),
    "nameless_preset": (["run", "--strategy", "{nameless_preset}"], "must name its strategy"),
    "unknown_strategy_preset": (["run", "--strategy", "{unknown_strategy_preset}"], "unknown strategy 'er_gaa'"),
    "broken_preset": (["run", "--strategy", "{broken_preset}"], "broken.toml: not valid TOML"),
    "never_learned": (
        ["run", "{never_learned}"], "never.toml: schedule.requests[0].classes: class 7 was never learned"
    ),
    "wrong_type": (["run", "{wrong_type}"], "split.n_tasks: expected a whole number, got 'five'"),
    "broken_scenario": (["run", "{broken_scenario}"], "broken-scenario.toml: not valid TOML"),
    "task_aware_only": (["run", "--strategy", "clpu_derpp"], "clpu_derpp needs a task_aware scenario"),
    "no_such_class": (["run", "{no_such_class}"],
                      "noclass.toml: schedule.requests[0].classes: class 12 does not exist (the dataset has 10"),
    "resume_missing": (["run", "--resume", "{tmp}/nothing-here"], "nothing-here: nothing to resume: no such folder"),
    "out_unwritable_for_root_too": (["run", "--out", "/proc/clu-test/run"], "--out is not writable"),
    "bad_checkpoints": (["run", "--checkpoints", "some"], "run: argument --checkpoints: invalid choice: 'some'"),
    "reversed_seeds": (["sweep", "digits-class", "--strategies", "er", "--seeds", "4-0"],
                       "sweep: argument --seeds: 4-0 is a reversed range; write 0-4"),
    "sweep_missing_strategies": (["sweep", "digits-class"], "the following arguments are required: --strategies"),
    "sweep_resume_missing": (["sweep", "digits-class", "--strategies", "er", "--resume", "--out", "{tmp}/nothing-here"],
                             "nothing to resume: no such folder"),
    "events_missing": (["events", "{tmp}/nope.toml"], "no such scenario file"),
    "audit_missing": (["audit", "{tmp}/nothing-here"], "no such run folder"),
}


@pytest.mark.parametrize("case", sorted(BAD_RUNS))
def test_bad_input_is_one_clean_message_status_2_and_writes_nothing(tmp_path: Path, case: str) -> None:
    files = _bad_files(tmp_path)
    argv, expected = BAD_RUNS[case]
    argv = [a.format(tmp=tmp_path, **files) for a in argv]
    out = tmp_path / "out"
    if argv[0] == "run" and "--out" not in argv and "--resume" not in argv:
        argv += ["--out", str(out), "--quiet"]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    rc, stdout, stderr = cli(*argv)
    assert rc == 2, (stdout, stderr)
    assert "Traceback" not in stderr + stdout
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("clu: error: ") and expected in last, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr  # one line: no usage block, no run header before it
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


def test_typos_fail_before_torch_avalanche_ray_or_scipy_load(tmp_path: Path) -> None:
    """Validation runs before the heavy imports (issue 17): a typo's error comes in well under a second."""
    typos = [
        ["run", "digits-clas"], ["run", "--strategy", "ugcl"], ["run", "--out", "/proc/clu-test/run"],
        ["sweep", "digits-clas", "--strategies", "er"], ["sweep", "digits-class", "--strategies", "ugcl"],
        ["sweep", "digits-class", "--strategies", "er", "--out", "/proc/clu-test/sweep"],
        ["sweep", "digits-class", "--strategies", "er", "--set", "training.epoch=1,2"],
        ["events", "digits-clas"], ["plot", str(tmp_path / "nothing")], ["strategies", "--show", "ugcl"],
        ["tune", "ugclu", "--scenarios", "digits-clas"],
    ]
    listings = [["strategies"], ["scenarios"]]  # need neither torch nor Avalanche
    code = ("import sys\nfrom clu.cli import main\n"
            f"codes = [main(a) for a in {typos + listings!r}]\n"
            "print(codes, sorted(m for m in ('torch', 'avalanche', 'ray', 'matplotlib', 'scipy.stats') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.stdout.strip().splitlines()[-1] == f"{[2] * len(typos) + [0, 0]} []", done.stderr
    assert len(done.stderr.strip().splitlines()) == len(typos)
    assert not list(tmp_path.iterdir())


def test_cuda_requested_without_cuda_is_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a machine with a GPU
    rc, _, stderr = cli("run", "--device", "cuda", "--out", tmp_path / "out", "--quiet")
    assert rc == 2
    assert stderr.strip() == "clu: error: --device: CUDA is not available on this machine; use --device cpu or auto"
    assert not (tmp_path / "out").exists()


def test_api_arguments_of_the_wrong_type_are_config_errors(tmp_path: Path) -> None:
    cfg = resolve_config("digits-class", ["er"], 0, "cpu")
    for kwargs, message in [
        ({"config": "digits-class"}, "clu.run expects a RunConfig, got str"),
        ({"config": {"scenario": "digits-class"}}, "clu.run expects a RunConfig, got dict"),
        ({"config": cfg, "out": 5}, "out: expected a folder path"),
        ({"config": cfg, "out": tmp_path / "o", "resume": "yes"}, "resume: expected true or false"),
        ({"config": cfg, "out": tmp_path / "o", "threads": "2"}, "threads: expected a whole number >= 1"),
        ({"config": cfg, "out": tmp_path / "o", "threads": 0}, "threads: expected a whole number >= 1"),
    ]:
        config = kwargs.pop("config")
        with pytest.raises(ConfigError, match=re.escape(message)):
            clu.run(config, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_generate_time_error_leaves_no_folder_through_the_api(tmp_path: Path) -> None:
    files = _bad_files(tmp_path)
    with pytest.raises(ConfigError):
        cfg = resolve_config(str(files["never_learned"]), ["er"], 0, "cpu")
        clu.run(cfg, out=tmp_path / "out")
    text = DIGITS_CLASS.replace('class_order = "seeded"', 'class_order = "natural"').replace(
        "n_classes = 1", "n_classes = 3"
    )  # valid file, but no task has 3 classes to forget: only the generator can tell
    cfg = resolve_config(str(fast_scenario(tmp_path, text, "three.toml")), ["er"], 0, "cpu")
    with pytest.raises(ConfigError, match="no learned task has 3 retained classes"):
        clu.run(cfg, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.fixture()
def resumable(tmp_path: Path) -> tuple[Path, Path]:
    """A run folder as a killed run leaves it before its first checkpoint (config.toml + events.jsonl)."""
    from clu.events import to_json
    from clu.scenario import events_for

    scenario = fast_scenario(tmp_path)
    cfg = resolve_config(str(scenario), ["er", "retrain"], 3, None)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.toml").write_text(cfg.to_toml())
    (run_dir / "events.jsonl").write_text("".join(to_json(e) + "\n" for e in events_for(cfg.scenario, 3)))
    return scenario, run_dir


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--seed", "4"], "--seed 4: the run has seed 3"),
        (["--strategy", "er", "--strategy", "ugclu"], "--strategy ugclu: not in the run (it has retrain, er)"),
        (["--strategy", "er"], ""),  # retrain is added as the oracle either way: agrees
        (["--device", "cpu"], "--device cpu: the run has device auto"),
        (["SCENARIO_5_EPOCHS"], "training.epochs = 5, the run has 1"),
    ],
)
def test_resume_with_disagreeing_arguments_is_exit_2(
    resumable: tuple[Path, Path], args: list[str], expected: str
) -> None:
    scenario, run_dir = resumable
    (scenario.parent / "five.toml").write_text(DIGITS_CLASS)
    args = [str(scenario.parent / "five.toml") if a == "SCENARIO_5_EPOCHS" else a for a in args]
    if not expected:
        cfg = load_run_config(run_dir / "config.toml")
        check_resume_args(cfg, run_dir / "config.toml", str(scenario), ("er",), 3, None)  # agrees: no error
        return
    before = sorted(run_dir.rglob("*"))
    rc, _, stderr = cli("run", *args, "--resume", run_dir, "--quiet")
    assert rc == 2
    assert stderr.startswith(f"clu: error: {run_dir}/config.toml: the arguments disagree with the run being resumed")
    assert expected in stderr and len(stderr.strip().splitlines()) == 1
    assert sorted(run_dir.rglob("*")) == before


# ------------------------------------------------------------------------------------------ end to end

RUN_ARGS = ["--strategy", "er", "--strategy", "retrain", "--seed", "3"]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(scenario file, an uninterrupted run folder) for er + retrain, seed 3, one epoch."""
    tmp = tmp_path_factory.mktemp("reliability")
    scenario = fast_scenario(tmp)
    rc, _, stderr = cli("run", scenario, *RUN_ARGS, "--out", tmp / "full", "--quiet")
    assert rc == 0, stderr
    return scenario, tmp / "full"


@pytest.mark.slow
def test_same_scenario_strategy_and_seed_give_byte_identical_metrics(
    baseline: tuple[Path, Path], tmp_path: Path
) -> None:
    scenario, full = baseline
    rc, _, stderr = cli("run", scenario, *RUN_ARGS, "--out", tmp_path / "again", "--quiet")
    assert rc == 0, stderr
    assert (tmp_path / "again" / "metrics.csv").read_bytes() == (full / "metrics.csv").read_bytes()
    assert (tmp_path / "again" / "events.jsonl").read_bytes() == (full / "events.jsonl").read_bytes()
    assert "time" not in (full / "metrics.csv").read_text()  # wall-clock times live in timings.csv


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [3, 12], ids=["in-the-oracle", "in-er"])
def test_sigkilled_run_resumes_to_identical_metrics(
    baseline: tuple[Path, Path], tmp_path: Path, kill_after: int
) -> None:
    """Kill ``clu run`` (SIGKILL) once ``kill_after`` checkpoints exist (3: the oracle's third event; 12: the
    third event of er, which runs after the oracle's 9), resume it with the same arguments, compare."""
    scenario, full = baseline
    cut = tmp_path / "cut"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*CLU, "run", str(scenario), *RUN_ARGS, "--out", str(cut), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if sum(1 for _ in cut.glob("checkpoints/*/event-*.pt")) >= kill_after:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed mid-way: {err.decode()[-500:]}"
    done = sum(1 for _ in cut.glob("checkpoints/*/event-*.pt"))
    assert kill_after <= done < 18

    rc, _, stderr = cli("run", scenario, *RUN_ARGS, "--resume", cut, "--quiet")  # the arguments again: they agree
    assert rc == 0, stderr
    assert (cut / "metrics.csv").read_bytes() == (full / "metrics.csv").read_bytes()
    assert not list(cut.rglob("*.tmp"))
    rc, text, _ = cli("audit", cut)
    assert rc == 0, text


@pytest.mark.slow
def test_diverging_strategies_stop_cleanly_keep_rows_and_others_go_on(tmp_path: Path) -> None:
    import csv
    import json

    import torch

    from clu.checkpoints import load_checkpoint

    scenario = fast_scenario(tmp_path)
    (tmp_path / "er-lr.toml").write_text('strategy = "er"\nlr = 1e30\n')  # diverges in its first learn event
    # diverges at the first request (its gradient-ascent phase), after two good learn events
    (tmp_path / "ga-unlearn.toml").write_text('strategy = "er_ga"\nunlearn_lr = 1e30\nclip = 0.0\n')
    out = tmp_path / "run"
    argv = ["run", scenario, "--strategy", tmp_path / "er-lr.toml", "--strategy", tmp_path / "ga-unlearn.toml",
            "--strategy", "er", "--seed", "0", "--quiet"]
    rc, stdout, stderr = cli(*argv, "--out", out)
    assert rc == 1
    assert "Traceback" not in stderr
    er_lr = r"^clu: er-lr: stopped at step 0 \(learn\): er: loss became (nan|inf|-inf) \(diverged\)$"
    assert re.search(er_lr, stderr, re.M), stderr
    assert re.search(r"^clu: ga-unlearn: stopped at step 2 \(class\): er_ga: .*diverged", stderr, re.M), stderr
    assert "ga-unlearn" in stdout and "stopped at step 2" in stdout  # the final table says so too

    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    labels = ("retrain", "er-lr", "ga-unlearn", "er")
    steps = {s: sorted({r["step"] for r in rows if r["strategy"] == s}) for s in labels}
    assert steps["er-lr"] == []
    assert steps["ga-unlearn"] == ["0", "1", "final"]  # the rows before the diverging event remain
    assert steps["er"] == steps["retrain"] == [*map(str, range(9)), "final"]  # the others go on
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategies"]["ga-unlearn"]["error"].startswith("stopped at step 2 (class)")
    assert "error" not in summary["strategies"]["er"]

    # the last checkpoint keeps the last good state (finite weights), marked with the error
    ckpts = sorted(p.name for p in (out / "checkpoints" / "ga-unlearn").iterdir())
    assert ckpts == ["event-000.pt", "event-001.pt"]
    last = load_checkpoint(out / "checkpoints" / "ga-unlearn" / "event-001.pt")
    assert last["error"].startswith("stopped at step 2") and len(last["records"]) == 2
    assert all(bool(torch.isfinite(v).all()) for v in last["strategy"]["model"].values())

    # resuming does not run a stopped strategy again, and gives the same metrics
    metrics = (out / "metrics.csv").read_bytes()
    rc, _, stderr = cli("run", "--resume", out, "--quiet")
    assert rc == 1 and "clu: ga-unlearn:" not in stderr and "clu: er-lr: stopped at step 0" in stderr
    assert (out / "metrics.csv").read_bytes() == metrics
    rc, text, _ = cli("audit", out)
    assert rc == 0, text
