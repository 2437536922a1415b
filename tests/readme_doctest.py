"""The README doc-test's machinery (tests/test_readme_doctest.py): find a markdown document's fenced blocks,
apply the substitution table (tests/readme_doctest.toml), and run a document's blocks in order.

Blocks by language: ``bash`` (each command runs, in order, in the document's folder), ``python`` (runs as a
script there), ``toml`` (validated by the test through clu's loaders), ``text`` (a listing; nothing runs). A
block right after ``<!-- no-doctest: reason -->`` is only parsed. Blocks between ``<!-- results:NAME -->`` and
``<!-- end results:NAME -->`` are generated tables and are skipped.

``python readme_doctest.py PLAN.json RESULTS.json`` is the worker that runs one document's plan: one process
for all blocks, so torch and Avalanche are imported once. A ``clu ...`` command without shell syntax runs
in-process through ``clu.cli.main`` (exit status and output as the ``clu`` script gives them); every other
command runs under ``bash -c`` with the venv's ``bin`` first on PATH.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

LANGS = ("bash", "python", "toml", "text")
"""The block languages a document may use; an unlabelled block has no way to run and is refused."""

_FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
_SKIP = re.compile(r"<!--\s*no-doctest\b:?(.*?)-->")
_SHELL_SYNTAX = re.compile(r"[|&;<>$`()]")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
COMMAND_TIMEOUT_S = 600


@dataclass(frozen=True)
class Block:
    """One fenced block of a document."""

    doc: str
    """The document, relative to the repository root (``README.md``)."""
    line: int
    """Line of the opening fence (1-based)."""
    lang: str
    """The fence's language; "" when unlabelled."""
    text: str
    """The body, its fence indentation removed, ending with a newline."""
    skip: str | None = None
    """The reason of a ``<!-- no-doctest: reason -->`` marker right before it ("" when given empty); None: it runs."""

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def extract_blocks(doc: str, text: str) -> list[Block]:
    """The fenced blocks of ``text`` outside the generated results blocks, in order."""
    lines, blocks = text.splitlines(), []
    in_results, previous, i = False, "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("<!-- results:"):
            in_results = True
        elif line.startswith("<!-- end results:"):
            in_results = False
        fence = None if in_results else _FENCE.match(line)
        if fence is None:
            previous = line if line.strip() else previous
            i += 1
            continue
        indent, lang = fence.groups()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"{doc}:{i + 1}: code block is never closed")
        body = "".join(ln.removeprefix(indent) + "\n" for ln in lines[i + 1:end])
        marker = _SKIP.search(previous)
        blocks.append(Block(doc, i + 1, lang, body, marker.group(1).strip() if marker else None))
        previous, i = "```", end + 1
    return blocks


def indented_code_lines(text: str) -> list[int]:
    """Lines (1-based) that open an indented code block: 4+ spaces after a blank line, outside fences."""
    found, in_fence, previous = [], False, ""
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence and line.startswith("    ") and line.strip() and not previous.strip():
            found.append(n)
        previous = line
    return found


def commands(text: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, blank and comment-only lines dropped."""
    joined = re.sub(r"\s*\\\n\s*", " ", text)
    return [ln.strip() for ln in joined.splitlines() if ln.strip() and not ln.strip().startswith("#")]


# ------------------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Sub:
    """An exact-string replacement in one block of ``doc``."""

    doc: str
    old: str
    new: str
    reason: str


@dataclass(frozen=True)
class Special:
    """How a block that is not a plain script is used: the block of ``doc`` that contains ``contains``."""

    doc: str
    contains: str
    reason: str
    save: str | None = None
    """Write the block to this file of the document's folder before any block runs."""
    module: str | None = None
    """A Python block that is a module: installed as this module (``clu.strategies.er_mine``) and imported."""
    register: bool = False
    """A Python block that is a registry line: evaluated in clu/strategies/registry.py's namespace, registered."""
    then: tuple[str, ...] = ()
    """Commands run right after the block (in the worker, like a shell block's)."""


@dataclass(frozen=True)
class Expect:
    """A command of ``doc`` (after substitution) that demonstrates an error: its documented exit status."""

    doc: str
    command: str
    status: int
    reason: str


@dataclass(frozen=True)
class Table:
    copy: tuple[str, ...] = ()
    """Folders copied from the repository root into each document's folder."""
    files: dict[str, str] = field(default_factory=dict)
    """Files written into each document's folder (name → text)."""
    subs: tuple[Sub, ...] = ()
    specials: tuple[Special, ...] = ()
    expects: tuple[Expect, ...] = ()


def _entries(raw: dict[str, Any], key: str, cls: type, path: Path) -> tuple[Any, ...]:
    out = []
    for i, entry in enumerate(raw.get(key, [])):
        if not str(entry.get("reason", "")).strip():
            raise ValueError(f"{path}: {key}[{i}]: give a reason")
        if "then" in entry:
            entry = {**entry, "then": tuple(entry["then"])}
        out.append(cls(**entry))
    return tuple(out)


def load_table(path: Path) -> Table:
    """The substitution table; every entry must give a reason."""
    raw = tomllib.loads(path.read_text())
    unknown = set(raw) - {"copy", "files", "sub", "special", "expect"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    return Table(tuple(raw.get("copy", ())), dict(raw.get("files", {})), _entries(raw, "sub", Sub, path),
                 _entries(raw, "special", Special, path), _entries(raw, "expect", Expect, path))


def substituted(block: Block, table: Table) -> str:
    """The block's text after the table's replacements for it."""
    text = block.text
    for sub in table.subs:
        if sub.doc == block.doc and sub.old in text:
            text = text.replace(sub.old, sub.new)
    return text


def special_of(block: Block, table: Table) -> Special | None:
    return next((s for s in table.specials if s.doc == block.doc and s.contains in block.text), None)


def plan(blocks: list[Block], table: Table, folder: Path, root: Path) -> dict[str, Any]:
    """The worker's plan for one document's blocks: folders to copy from ``root`` and files to write into
    ``folder``, then steps in document order.

    A block that runs but has no way to (unlabelled, unknown language) raises ValueError.
    """
    doc = blocks[0].doc if blocks else ""
    files = dict(table.files)
    steps: list[dict[str, Any]] = []
    for block in blocks:
        if block.skip is not None:
            continue
        if block.lang not in LANGS:
            raise ValueError(f"{block.where}: a block labelled {block.lang!r} has no way to run: label it one of "
                             f"{', '.join(LANGS)}, or mark it <!-- no-doctest: reason -->")
        special, text = special_of(block, table), substituted(block, table)
        if special is not None and special.save:
            files[special.save] = text
        if block.lang == "bash":
            steps.append({"kind": "bash", "where": block.where, "text": text})
        elif block.lang == "python":
            module, register = (special.module, special.register) if special else (None, False)
            kind = "module" if module else "register" if register else "python"
            steps.append({"kind": kind, "where": block.where, "text": text, "module": module})
        if special is not None and special.then:
            steps.append({"kind": "bash", "where": f"{block.where} (then)", "text": "\n".join(special.then) + "\n"})
    expect = {e.command: e.status for e in table.expects if e.doc == doc}
    copy = {name: str(root / name) for name in table.copy}
    return {"folder": str(folder), "copy": copy, "files": files, "steps": steps, "expect": expect}


# ------------------------------------------------------------------------------------------ the worker


def _clu(args: list[str]) -> tuple[int, str]:
    """``clu ARGS`` in this process: its exit status and output (a traceback for an uncaught exception)."""
    from clu.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            status = main(args)
        except SystemExit as e:  # argparse
            status = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        except Exception:
            traceback.print_exc(file=out)
            status = 1
    return status, out.getvalue()


def _expand(word: str) -> list[str]:
    """A word with ``*`` as bash expands it: the sorted matches, or the word itself when none."""
    return (sorted(glob.glob(word)) or [word]) if "*" in word else [word]


def run_command(command: str) -> tuple[int, str]:
    """One shell command in the working folder: its exit status and output."""
    import shlex

    words = shlex.split(command, comments=True)
    if words and words[0] == "clu" and not _SHELL_SYNTAX.search(_QUOTED.sub("", command.split(" #")[0])):
        return _clu([w for word in words[1:] for w in _expand(word)])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=COMMAND_TIMEOUT_S)
    return proc.returncode, proc.stdout + proc.stderr


def _python(step: dict[str, Any]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            exec(compile(step["text"], step["where"], "exec"), {"__name__": "__main__"})
        except Exception:
            traceback.print_exc(file=out)
            return 1, out.getvalue()
    return 0, out.getvalue()


def _module(step: dict[str, Any]) -> tuple[int, str]:
    """Install the block as ``step["module"]`` (a file in a folder added to its package's path) and import it."""
    parent, _, leaf = step["module"].rpartition(".")
    folder = Path(".doctest-modules", parent).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{leaf}.py").write_text(step["text"])
    try:
        importlib.import_module(parent).__path__.append(str(folder))
        importlib.import_module(step["module"])
    except Exception:
        return 1, traceback.format_exc()
    return 0, f"installed {step['module']} from {folder / leaf}.py\n"


def _register(step: dict[str, Any]) -> tuple[int, str]:
    """Evaluate a registry line as registry.py would (its names in scope) and register its entries here only."""
    from clu.strategies import registry

    try:
        value = eval(compile(step["text"], step["where"], "eval"), dict(vars(registry)))
        for entry in value if isinstance(value, tuple) else (value,):
            registry.register(entry)
    except Exception:
        return 1, traceback.format_exc()
    return 0, f"registered {value!r}\n"


_RUNNERS: dict[str, Callable[[dict[str, Any]], tuple[int, str]]] = {
    "python": _python, "module": _module, "register": _register}


def run_plan(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Copy and write the plan's files into its folder, then run its steps in order there; one result per
    command."""
    folder = Path(plan["folder"])
    os.chdir(folder)
    for name, source in plan["copy"].items():
        shutil.copytree(source, folder / name)
    for name, text in plan["files"].items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    results = []
    for step in plan["steps"]:
        if step["kind"] == "bash":
            runs = [(c, plan["expect"].get(c, 0), lambda c=c: run_command(c)) for c in commands(step["text"])]
        else:
            runs = [(f"<{step['kind']} block>", 0, lambda step=step: _RUNNERS[step["kind"]](step))]
        for command, expected, run in runs:
            t0 = time.perf_counter()
            status, output = run()
            results.append({"where": step["where"], "command": command, "status": status, "expected": expected,
                            "output": output, "seconds": round(time.perf_counter() - t0, 2)})
    return results


if __name__ == "__main__":
    plan_file, results_file = map(Path, sys.argv[1:3])
    Path(results_file).write_text(json.dumps(run_plan(json.loads(plan_file.read_text())), indent=1))
