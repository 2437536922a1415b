"""``clu events`` / ``clu scenarios`` end to end (DESIGN §5, §12).

Each fresh interpreter spends seconds importing torch, so only what needs one runs as a subprocess (all of them
started at once in one fixture): the byte-identical stream across two interpreters, a load-time and a
generate-time bad file, the missing CIFAR files, and the import check. Every bad file also runs through
``clu.cli.main`` in-process, which returns the same status and prints the same line (a traceback would
surface there as an exception).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from clu.cli import main
from clu.paths import SCENARIO_DIR
from clu.scenario import load_scenario

_SCRIPT = Path(sys.executable).with_name("clu")
CLU = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "clu.cli"]

DIGITS_CLASS_FILE = SCENARIO_DIR / "digits-class.toml"
DIGITS_CLASS = DIGITS_CLASS_FILE.read_text()
TASK_AWARE = (SCENARIO_DIR / "digits-task-aware.toml").read_text()
_RULE = DIGITS_CLASS[DIGITS_CLASS.index("[[schedule.rules]]"):]
_NATURAL = DIGITS_CLASS.replace('class_order = "seeded"', 'class_order = "natural"')  # tasks [0,1] [2,3] ...


def _requests(text: str) -> str:
    """digits-class in natural class order with its generator rule replaced by explicit requests."""
    return _NATURAL.replace(_RULE, text)


# name: (file text, the key the message must name)
BAD = {
    "unknown_key": (DIGITS_CLASS.replace("n_tasks = 5", "n_tasks = 5\nn_taks = 4"), "split.n_taks"),
    "never_learned": (
        _requests('[[schedule.requests]]\nafter_task = 2\nkind = "class"\nclasses = [7]\n'),
        "schedule.requests[0].classes",
    ),
    "cross_task_one_task": (
        _requests('[[schedule.requests]]\nafter_task = 3\nkind = "cross_task"\nclasses = [2, 3]\n'),
        "schedule.requests[0].classes",
    ),
    "f_on_r": (
        TASK_AWARE.replace('[2, "F"]', '[3, "F"]'),
        "schedule.sequence[5]",
    ),
    "fraction": (
        _requests('[[schedule.requests]]\nafter_task = 2\nkind = "random_sample"\nfraction = 1.5\n'),
        "schedule.requests[0].fraction",
    ),
    "empty_task": (
        DIGITS_CLASS.replace('class_order = "seeded"', 'class_order = "seeded"\ntasks = [[0, 1], [], [2, 3]]'),
        "split.tasks[1]",
    ),
}
MISSING_CIFAR = '''name = "cifar-missing"
description = "CIFAR-10 with no files"

[data]
name = "cifar10"
root = "{root}"

[split]
n_tasks = 5
classes_per_task = 2

[[schedule.rules]]
kind = "class"
'''


SEED0_JSONL = ("--seed", "0", "--format", "jsonl")
SUBPROCESS_BAD = ("unknown_key", "f_on_r")  # one fails while loading the file, one while generating events


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: bytes
    stderr: str


def _launch(argv: list[str], out_dir: Path, name: str, **env: str) -> tuple[subprocess.Popen, Path, Path]:
    out, err = out_dir / f"{name}.out", out_dir / f"{name}.err"
    with out.open("wb") as fo, err.open("wb") as fe:
        proc = subprocess.Popen(argv, stdout=fo, stderr=fe, cwd=out_dir, env={**os.environ, **env})
    return proc, out, err


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    """Start every subprocess of this module at once; kill what still runs at the end."""
    tmp = tmp_path_factory.mktemp("cli")
    jobs: dict[str, tuple[list[str], dict[str, str]]] = {
        # two interpreters with different hash seeds: no set/dict order may leak into the output
        "seed0_a": ([*CLU, "events", str(DIGITS_CLASS_FILE), *SEED0_JSONL], {"PYTHONHASHSEED": "1"}),
        "seed0_b": ([*CLU, "events", str(DIGITS_CLASS_FILE), *SEED0_JSONL], {"PYTHONHASHSEED": "2"}),
        "import_clu": (
            [sys.executable, "-c",
             "import sys, clu; print(','.join(m for m in ('ray', 'matplotlib', 'avalanche') if m in sys.modules))"],
            {},
        ),
    }
    for name in SUBPROCESS_BAD:
        path = tmp / f"{name}.toml"
        path.write_text(BAD[name][0])
        jobs[f"bad_{name}"] = ([*CLU, "events", str(path)], {})
    cifar = tmp / "cifar-missing.toml"
    cifar.write_text(MISSING_CIFAR.format(root=tmp / "no-cifar-here"))
    jobs["cifar"] = ([*CLU, "events", str(cifar)], {})

    procs = {name: (argv, *_launch(argv, tmp, name, **env)) for name, (argv, env) in jobs.items()}
    yield procs
    for _, proc, _, _ in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module", autouse=True)
def _start_early(request) -> None:
    """Start the subprocesses before the in-process tests when a test that needs them is selected."""
    if any(item.module is request.module and "runs" in item.fixturenames for item in request.session.items):
        request.getfixturevalue("started")


@pytest.fixture(scope="module")
def runs(started) -> dict[str, Result]:
    results = {}
    for name, (argv, proc, out, err) in started.items():
        proc.wait(timeout=240)
        results[name] = Result(argv, proc.returncode, out.read_bytes(), err.read_text())
    return results


def _main(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_events_by_name_and_default_seed(capsys) -> None:
    code, by_name, _ = _main(capsys, "events", "digits-class", "--format", "jsonl")
    assert code == 0
    assert by_name == _main(capsys, "events", "digits-class", "--seed", "0", "--format", "jsonl")[1]
    code, table, _ = _main(capsys, "events", "digits-task-aware")
    assert code == 0
    rows = table.splitlines()
    assert rows[0].split() == ["step", "kind", "task", "classes", "samples"]
    assert [" ".join(r.split()[1:3]) for r in rows[1:]][:2] == ["learn (R)", "learn (T)"]
    assert len(rows) == 9


WORDS = {
    "unknown_key": "unknown key; allowed keys here:",
    "never_learned": "class 7 was never learned",
    "cross_task_one_task": "at least 2 tasks",
    "f_on_r": "learned permanently (R); only T tasks may be forgotten",
    "fraction": "must be in (0, 1], got 1.5",
    "empty_task": "a task with no classes",
}


def test_bad_files_really_change_the_originals() -> None:
    for name, (text, _) in BAD.items():
        assert text not in (DIGITS_CLASS, TASK_AWARE, _NATURAL), name


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_scenario_exits_2_with_one_line(tmp_path, capsys, name) -> None:
    text, key = BAD[name]
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    code, out, err = _main(capsys, "events", str(path))
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"clu: error: {path}: {key}: "), lines[0]
    assert WORDS[name] in lines[0]


def test_scenarios_lists_every_file_with_its_description(capsys) -> None:
    code, out, err = _main(capsys, "scenarios")
    assert code == 0 and err == ""
    lines = out.splitlines()
    files = sorted(SCENARIO_DIR.glob("*.toml"))
    assert len(lines) == len(files) >= 12
    for line, f in zip(lines, files):
        spec = load_scenario(f)
        assert line.split()[0] == f.stem
        assert spec.description and line.rstrip().endswith(spec.description)


def test_scenarios_in_an_empty_folder(tmp_path, capsys) -> None:
    code, out, err = _main(capsys, "scenarios", "--dir", str(tmp_path))
    assert code == 2
    assert err.startswith(f"clu: error: {tmp_path}: no scenario files")


def test_unknown_scenario_name_lists_the_known_ones(capsys) -> None:
    code, _, err = _main(capsys, "events", "digits-clas")
    assert code == 2
    [line] = err.splitlines()
    assert "unknown scenario 'digits-clas'" in line and "digits-class" in line


# --- fresh interpreters (started at the top of the module, collected here) -------------------------


@pytest.mark.slow
def test_events_jsonl_is_byte_identical_for_a_seed(runs, capsys) -> None:
    a, b = runs["seed0_a"], runs["seed0_b"]
    for r in (a, b):
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""
    assert a.stdout  # something was printed
    assert a.stdout == b.stdout
    lines = a.stdout.decode().splitlines()
    assert len(lines) == 9
    assert lines[0].startswith('{"type":"learn"')
    # a third run in this interpreter: the same bytes for seed 0, others for seed 1
    code, out0, _ = _main(capsys, "events", str(SCENARIO_DIR / "digits-class.toml"), "--seed", "0", "--format", "jsonl")
    assert code == 0 and out0.encode() == a.stdout
    code, out1, err = _main(capsys, "events", str(SCENARIO_DIR / "digits-class.toml"), "--seed", "1",
                            "--format", "jsonl")
    assert code == 0 and err == ""
    assert out1 != out0 and len(out1.splitlines()) == 9


@pytest.mark.slow
@pytest.mark.parametrize("name", SUBPROCESS_BAD)
def test_bad_scenario_subprocess_exits_2_with_one_line(runs, name) -> None:
    r = runs[f"bad_{name}"]
    path = r.argv[-1]
    key = BAD[name][1]
    assert r.returncode == 2, r.stderr
    assert r.stdout == b""
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"clu: error: {path}: {key}: "), lines[0]


@pytest.mark.slow
def test_missing_cifar_fails_at_once_saying_where_files_go(runs) -> None:
    r = runs["cifar"]
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    [line] = r.stderr.splitlines()
    assert line.startswith(f"clu: error: {r.argv[-1]}: data.root: cifar10 files not found")
    assert "no-cifar-here" in line and "cifar-10-batches-py" in line
    assert "data.download = true" in line


@pytest.mark.slow
def test_import_clu_is_light(runs) -> None:
    r = runs["import_clu"]
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().strip() == "", f"import clu loaded {r.stdout.decode().strip()}"


# --- clu strategies ---------------------------------------------------------------------------------


def test_strategies_lists_the_registry(capsys) -> None:
    code, out, _ = _main(capsys, "strategies")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert names == sorted(names) and {"ugclu", "retrain", "er"} <= set(names)


def test_strategies_show_prints_the_resolved_config(capsys, tmp_path) -> None:
    import tomllib

    from clu.config import to_dict
    from clu.strategies import strategy_config

    code, out, _ = _main(capsys, "strategies", "--show", "ugclu")
    assert code == 0
    shown = tomllib.loads(out)
    assert shown.pop("strategy") == "ugclu" and shown.pop("label") == "ugclu"
    assert "alpha_u" in shown and shown == to_dict(strategy_config("ugclu"))  # every field, defaults included
    preset = tmp_path / "mine.toml"
    preset.write_text('strategy = "ugclu"\nlabel = "ugclu-fast"\nalpha_u = 3.5\n')
    code, out, _ = _main(capsys, "strategies", "--show", str(preset))
    assert code == 0 and tomllib.loads(out)["alpha_u"] == 3.5 and tomllib.loads(out)["label"] == "ugclu-fast"
    code, _, err = _main(capsys, "strategies", "--show", "ugcl")
    assert code == 2 and "unknown strategy 'ugcl'" in err
