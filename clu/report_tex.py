"""The sweep table as booktabs LaTeX (``table.tex``, ``clu report DIR --format tex``).

Drawn from the same :class:`clu.report.Section` cells as the markdown form — same rows, columns, numbers and
marks — only escaped: **bold** → ``\\textbf{}``, the tied mark ``=`` → ``$^{=}$``, ``≈`` → ``$\\approx$``,
``±`` → ``$\\pm$``, ``%``/``_`` and the other specials escaped. One ``table`` float per scenario, caption and
label from the scenario name. Needs ``\\usepackage{booktabs}`` in the document.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Sequence

from clu.verdicts import COLUMNS

if TYPE_CHECKING:  # clu.report imports this module
    from clu.report import Section

_SUBS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"$<$", ">": r"$>$",
    "±": r"$\pm$", "≈": r"$\approx$", "↓": r"$\downarrow$", "↑": r"$\uparrow$", "→": r"$\to$",
    "†": r"$^\dagger$", "–": "--", "`": "",
}
_LEGEND = (r"Mean $\pm$ 95\,\% CI over seeds. \textbf{Bold}: better than every other method by paired "
           r"t-tests over seeds (Holm, 5\,\%); $^{=}$: leaders not significantly different; $\approx$: gap not "
           r"significantly above the twin's (indistinguishable from exact unlearning). MIA and LiRA\_AUC (the "
           r"attack's score) are not ranked.")


def escape(text: str) -> str:
    """Plain text (unicode marks included) as LaTeX text."""
    return "".join(_SUBS.get(ch, ch) for ch in text)


def label(name: str) -> str:
    """A ``\\label`` key for a name: ``tab:<name>`` with anything unusual replaced by ``-``."""
    return "tab:" + re.sub(r"[^A-Za-z0-9.:-]", "-", name)


def tabular(header: Sequence[str], rows: Sequence[Sequence[str]], caption: str, key: str,
            notes: Sequence[str] = (), left: int = 1) -> str:
    """One booktabs table float: the first ``left`` columns left-aligned, the others right-aligned. Cells,
    caption and notes are LaTeX already (see :func:`escape`)."""
    lines = [r"\begin{table}[htbp]", r"\centering", r"\scriptsize", r"\setlength{\tabcolsep}{3pt}",
             rf"\caption{{{caption}}}", rf"\label{{{key}}}",
             rf"\begin{{tabular}}{{{'l' * left}{'r' * (len(header) - left)}}}", r"\toprule",
             " & ".join(header) + r" \\", r"\midrule"]
    lines += [" & ".join(row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\smallskip {note}" for note in notes]
    lines.append(r"\end{table}")
    return "\n".join(lines)


def _cell(text: str, mark: str) -> str:
    t = escape(text)
    return rf"\textbf{{{t}}}" if mark == "bold" else f"{t}$^{{=}}$" if mark == "tied" else t


def sections_tex(sections: Sequence[Section], comments: Sequence[str] = ()) -> str:
    """The sweep table: ``comments`` (the intro and legend) as ``%`` lines, then one table per scenario."""
    from clu.report import DIVERGED, wilcoxon_line  # here: clu.report imports this module

    out = [f"% {line}" for line in comments] + [r"% requires \usepackage{booktabs}", ""]
    header = ["strategy", *(escape(c.header) for c in COLUMNS)]
    for sec in sections:
        rows = [[escape(name), *(_cell(t, m) for t, m in cells)] for name, cells in sec.rows]
        notes = ([escape(DIVERGED)] if sec.diverged else []) + ([escape(wilcoxon_line(sec))] if sec.wilcoxon else [])
        caption = f"{escape(sec.scenario)}. {escape(sec.note)} {_LEGEND}"
        out += [tabular(header, rows, caption, label(sec.scenario), notes), ""]
    return "\n".join(out)
