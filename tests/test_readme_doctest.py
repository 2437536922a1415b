"""The README as tested documentation (issue 17): every shell and Python block of README.md and bench/README.md
runs (tiny settings by the substitution table tests/readme_doctest.toml), every TOML block is validated by clu's
loaders, the 'add a strategy' example is installed into a temporary registry and run, and a block marked
``<!-- no-doctest: reason -->`` is parsed only. The prose states no measured time, and the documents name the
default run, sweep and tune folders as the CLI does. Machinery: tests/readme_doctest.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from clu.config import ConfigError
from clu.scenario import events_for, load_scenario
from clu.strategies import resolve_strategy
from clu.tune.space import load_space
from readme_doctest import (
    LANGS,
    Block,
    Expect,
    Table,
    commands,
    extract_blocks,
    indented_code_lines,
    load_table,
    plan,
    run_plan,
    substituted,
)

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
DOCS = ("README.md", "bench/README.md", "runs/README.md")
TABLE = load_table(TESTS / "readme_doctest.toml")
WORKER_TIMEOUT_S = 900


def _blocks(doc: str) -> list[Block]:
    return extract_blocks(doc, (ROOT / doc).read_text())


ALL = [b for doc in DOCS for b in _blocks(doc)]
RUNNABLE_DOCS = [d for d in DOCS if any(b.skip is None and b.lang in ("bash", "python") for b in _blocks(d))]


def _outside_results(text: str) -> str:
    """The document without its generated ``<!-- results:NAME -->`` blocks."""
    return re.sub(r"<!-- results:(\S+) -->.*?<!-- end results:\1 -->", "", text, flags=re.S)


# ---------------------------------------------------------------------------------------- the parser


SAMPLE = """# Doc

```bash
clu strategies   # one
```

<!-- no-doctest: a make target -->
```bash
make all
```

<!-- results:t1 -->
```
a generated block is skipped
```
<!-- end results:t1 -->

<!-- no-doctest: -->
```python
x = 1
```

```
unlabelled
```

Text.

    indented command
"""


def test_the_parser_finds_blocks_markers_and_indented_code() -> None:
    blocks = extract_blocks("doc.md", SAMPLE)
    assert [(b.line, b.lang, b.skip) for b in blocks] == [
        (3, "bash", None), (8, "bash", "a make target"), (19, "python", ""), (23, "", None)]
    assert blocks[0].text == "clu strategies   # one\n" and blocks[1].text == "make all\n"
    assert indented_code_lines(SAMPLE) == [29]
    assert commands("a --x \\\n    --y  # c\n\n# only a comment\nb\n") == ["a --x --y  # c", "b"]
    with pytest.raises(ValueError, match="no way to run"):
        plan(blocks, Table(), Path("."), ROOT)  # the unlabelled block
    with pytest.raises(ValueError, match="never closed"):
        extract_blocks("doc.md", "```bash\nclu run\n")


def test_the_worker_runs_commands_in_order_with_their_expected_status(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # run_plan changes into its folder; this restores the test's
    doc = ("```bash\necho hi > a.txt\ncat a.txt | tr h H\nclu events tiny.toml --format jsonl\n"
           "clu strategies --show nope\nclu report runs/sweep-*\nfalse\n```\n\n"
           "```python\nprint(open('a.txt').read())\n```\n")
    table = Table(files={"tiny.toml": TABLE.files["tiny.toml"]},
                  expects=(Expect("d.md", "clu strategies --show nope", 2, "an unknown name"),))
    results = run_plan(plan(extract_blocks("d.md", doc), table, tmp_path, ROOT))
    got = [(r["command"], r["status"], r["expected"]) for r in results]
    assert got == [("echo hi > a.txt", 0, 0), ("cat a.txt | tr h H", 0, 0),
                   ("clu events tiny.toml --format jsonl", 0, 0), ("clu strategies --show nope", 2, 2),
                   ("clu report runs/sweep-*", 2, 0), ("false", 1, 0), ("<python block>", 0, 0)]
    assert results[1]["output"] == "Hi\n" and results[-1]["output"] == "hi\n\n"
    assert '"type":"learn"' in results[2]["output"] and "clu: error:" in results[3]["output"]


# ---------------------------------------------------------------------------------------- every block


@pytest.mark.parametrize("block", ALL, ids=lambda b: b.where)
def test_every_block_has_a_language_and_a_marker_has_a_reason(block: Block) -> None:
    assert block.lang in LANGS, f"{block.where}: label the block one of {', '.join(LANGS)}"
    if block.skip is not None:
        assert block.skip, f"{block.where}: <!-- no-doctest: reason --> needs its reason"
        assert block.lang in ("bash", "python"), f"{block.where}: only shell and Python blocks can be skipped"
    if block.lang == "text":  # a listing, never a command in disguise
        first = {line.split()[0] for line in block.text.splitlines() if line.strip()}
        assert not first & {"clu", "make", "python", "pip", "ray", "tensorboard"}, f"{block.where}: a command"


@pytest.mark.parametrize("doc", DOCS)
def test_no_indented_code_blocks(doc: str) -> None:
    assert indented_code_lines(_outside_results((ROOT / doc).read_text())) == [], "use a fenced block"


@pytest.mark.parametrize("block", [b for b in ALL if b.skip], ids=lambda b: b.where)
def test_skipped_blocks_parse(block: Block) -> None:
    if block.lang == "python":
        compile(block.text, block.where, "exec")
    else:
        proc = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True)
        assert proc.returncode == 0, f"{block.where}: {proc.stderr}"


def test_every_table_entry_matches_exactly_one_block() -> None:
    for sub in TABLE.subs:
        hits = [b.where for b in ALL if b.doc == sub.doc and sub.old in b.text]
        assert len(hits) == 1, f"substitution {sub.old!r} matches {hits or 'no block'}"
    for special in TABLE.specials:
        hits = [b.where for b in ALL if b.doc == special.doc and special.contains in b.text]
        assert len(hits) == 1, f"special {special.contains!r} matches {hits or 'no block'}"
    for expect in TABLE.expects:
        hits = [b.where for b in ALL if b.doc == expect.doc and expect.command in commands(substituted(b, TABLE))]
        assert len(hits) == 1, f"expectation {expect.command!r} matches {hits or 'no block'}"


# ---------------------------------------------------------------------------------------- TOML blocks


def validate_toml(text: str, folder: Path) -> None:
    """A search space (``[space]``), a strategy preset (``strategy = ...``) or a scenario, through clu's own
    loaders; a scenario's stream is generated for its seed and seeds 0-9 (an example must hold for any seed)."""
    data = tomllib.loads(text)
    path = folder / "block.toml"
    path.write_text(text)
    if "space" in data:
        load_space(path)
    elif "strategy" in data:
        resolve_strategy(str(path))
    else:
        spec = load_scenario(path)
        for seed in sorted({spec.seed, *range(10)}):
            events_for(spec, seed)


@pytest.mark.parametrize("block", [b for b in ALL if b.lang == "toml"], ids=lambda b: b.where)
def test_toml_blocks_are_valid(block: Block, tmp_path: Path) -> None:
    validate_toml(block.text, tmp_path)


def test_validate_toml_reads_presets_and_refuses_bad_files(tmp_path: Path) -> None:
    validate_toml('strategy = "er_ga"\nunlearn_iters = 3\n', tmp_path)
    with pytest.raises(ConfigError, match="unlearn_iterz"):
        validate_toml('strategy = "er_ga"\nunlearn_iterz = 3\n', tmp_path)
    scenario = TABLE.files["tiny.toml"].replace('kind = "class"', 'kind = "class"\nclasses = [9]')
    with pytest.raises(ConfigError):
        validate_toml(scenario, tmp_path)


# ---------------------------------------------------------------------------------------- running them


def _run_document(doc: str, folder: Path) -> list[dict]:
    """The worker's results for ``doc`` (one process for all of its blocks)."""
    folder.mkdir()
    plan_file, results_file = folder.parent / "plan.json", folder.parent / "results.json"
    plan_file.write_text(json.dumps(plan(_blocks(doc), TABLE, folder, ROOT)))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(TESTS / "readme_doctest.py"), str(plan_file), str(results_file)],
                          cwd=folder, capture_output=True, text=True, env=env, timeout=WORKER_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(results_file.read_text())


@pytest.mark.slow
@pytest.mark.xdist_group("readme-doctest")
@pytest.mark.parametrize("doc", RUNNABLE_DOCS)
def test_blocks_run_as_written(doc: str, tmp_path: Path) -> None:
    results = _run_document(doc, tmp_path / "doc")
    failed = [r for r in results if r["status"] != r["expected"]]
    assert not failed, "\n\n".join(
        f"{r['where']}: `{r['command']}` exited {r['status']} (expected {r['expected']}):\n{r['output'][-3000:]}"
        for r in failed)
    if doc == "README.md":  # the 'add a strategy' example ran as its own strategy
        summary = json.loads((tmp_path / "doc" / "runs" / "er-mine" / "summary.json").read_text())
        assert "er_mine" in summary["strategies"]


# ---------------------------------------------------------------------------------------- the prose


_TIME = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?(?:\s*[–-]\s*\d+(?:\.\d+)?)?)\s*(?:ms|s|sec|seconds?|min|minutes?|h|"
                   r"hours?)\b")


@pytest.mark.parametrize("doc", DOCS)
def test_no_sentence_states_a_measured_time(doc: str) -> None:
    """Times come from files that the repository regenerates (bench/RESULTS.md, results/); a target may be
    stated (``≤ 60 s``), a measurement may not."""
    text = _outside_results((ROOT / doc).read_text())
    typed = [m.group(0) for m in _TIME.finditer(text) if not re.search(r"[≤≥<>]\s*$", text[:m.start()])]
    assert typed == [], f"{doc} states times the repository does not regenerate: {typed}"


@pytest.mark.parametrize("doc", DOCS)
def test_no_back_to_back_parentheses(doc: str) -> None:
    text = re.sub(r"\]\([^)]*\)", "]", _outside_results((ROOT / doc).read_text()))  # links are not asides
    found = re.findall(r"[^\n]{0,40}\) \([^\n]{0,20}", text)
    assert found == [], f"{doc}: one aside per pair of parentheses: {found}"


_RUNS_DIR = re.compile(r"runs/[\w-]*<\w+>[\w<>-]*")


def test_documents_name_the_default_folders_as_the_cli_does() -> None:
    cli = set(_RUNS_DIR.findall((ROOT / "clu" / "cli.py").read_text()))
    assert cli == {"runs/<scenario>-<time>", "runs/sweep-<time>", "runs/tune-<time>"}
    for doc in DOCS:
        named = set(_RUNS_DIR.findall(_outside_results((ROOT / doc).read_text())))
        assert named <= cli, f"{doc}: {sorted(named - cli)} is not a folder name the CLI uses"
    assert set(_RUNS_DIR.findall((ROOT / "runs" / "README.md").read_text())) == cli
