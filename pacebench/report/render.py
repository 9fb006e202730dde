"""Render step for tables: a gathered `TableData` as a rich Table, Markdown, LaTeX (booktabs) or CSV.

Missing measurements (NaN) print as "–", never as a number. In rich, Markdown and LaTeX a column with a std sibling
(`TableData.pm`) prints as "mean ± std" (just the mean when there is one seed); CSV keeps both columns as numbers,
at full precision, for other programs to read. In a terminal (rich) the table is laid out for the terminal's width
(`terminal.Fit`): where not every column fits it shows the table's headline columns (`TableData.headline`) and says
which it hid, or with `wide` every column, transposed where they do not fit. The other formats hold every column.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape
from typing import Any

import pandas as pd

from pacebench.choices import Format
from pacebench.registry import Registry
from pacebench.report.tables import TableData, gather
from pacebench.store import Storage
from pacebench.terminal import Column, Fit

MISSING = "–"
NUMBER = ".2f"

Renderer = Callable[..., Any]  # (TableData, *, wide: bool) -> str, or a rich renderable
FORMATS: Registry[Renderer] = Registry("format")


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def cell(value: Any, spec: str = NUMBER) -> str:
    """One value as text: "–" when missing, numbers with `spec` ("d": a whole number)."""
    if _missing(value):
        return MISSING
    if isinstance(value, str | bool):
        return str(value)
    if spec == "d":
        return str(int(round(float(value))))
    return format(float(value), spec)


def display(data: TableData) -> tuple[list[str], list[list[str]], list[bool]]:
    """Headers, rows of text and which columns are numeric (right-aligned), with "mean ± std" columns merged."""
    frame, std_columns = data.frame, set(data.pm.values())
    headers, columns, numeric = [], [], []
    for name in frame.columns:
        if name in std_columns:
            continue
        spec = data.formats.get(name, NUMBER)
        values = [cell(v, spec) for v in frame[name]]
        if name in data.pm:
            values = [
                v if v == MISSING or _missing(s) else f"{v} ± {cell(s, spec)}"
                for v, s in zip(values, frame[data.pm[name]], strict=True)
            ]
        headers.append(str(name))
        columns.append(values)
        numeric.append(pd.api.types.is_numeric_dtype(frame[name]))
    rows = [list(row) for row in zip(*columns, strict=True)] if columns else []
    return headers, rows, numeric


@FORMATS.register(Format.md)
def to_markdown(data: TableData, wide: bool = True) -> str:
    headers, rows, numeric = display(data)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [f"**{data.title}**", "", line(headers), "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"]
    out += [line(r) for r in rows]
    if data.notes:
        out += ["", *(f"- {note}" for note in data.notes)]
    return "\n".join(out) + "\n"


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "–": "--",
    "±": r"$\pm$",
    "−": "$-$",
    "λ": r"$\lambda$",
    "σ": r"$\sigma$",
    "×": r"$\times$",
}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text.replace("->", "→")).replace("→", r"$\rightarrow$")


@FORMATS.register(Format.latex)
def to_latex(data: TableData, wide: bool = True) -> str:
    """A booktabs table (needs \\usepackage{booktabs}); the notes go under the tabular in small print."""
    headers, rows, numeric = display(data)
    out = [
        r"\begin{table}[ht]",
        r"  \centering",
        rf"  \caption{{{latex_escape(data.title)}}}",
        rf"  \begin{{tabular}}{{{''.join('r' if n else 'l' for n in numeric)}}}",
        r"    \toprule",
        "    " + " & ".join(latex_escape(h) for h in headers) + r" \\",
        r"    \midrule",
    ]
    out += ["    " + " & ".join(latex_escape(c) for c in row) + r" \\" for row in rows]
    out += [r"    \bottomrule", r"  \end{tabular}"]
    if data.notes:
        out += [r"  \par\smallskip", "  {\\footnotesize " + "\\\\\n   ".join(latex_escape(n) for n in data.notes) + "}"]
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


@FORMATS.register(Format.csv)
def to_csv(data: TableData, wide: bool = True) -> str:
    """The frame as CSV: std columns kept separate, numbers to 6 significant digits, missing values as "–"."""
    return data.frame.to_csv(index=False, na_rep=MISSING, float_format="%.6g", lineterminator="\n")


@FORMATS.register("html")
def to_html(data: TableData, wide: bool = True) -> str:
    """An HTML fragment: a <table> with the title as caption, paper rows marked `class="paper"`, notes under it."""
    headers, rows, numeric = display(data)
    source = list(data.frame["source"]) if "source" in data.frame.columns else [""] * len(rows)
    align = ['class="num"' if n else "" for n in numeric]
    out = [
        f"<table>\n<caption>{escape(data.title)}</caption>",
        "<thead><tr>"
        + "".join(f"<th {a}>{escape(h)}</th>" for h, a in zip(headers, align, strict=True))
        + "</tr></thead>",
        "<tbody>",
    ]
    for row, src in zip(rows, source, strict=True):
        kind = ' class="paper"' if str(src).startswith("paper") else ""
        out.append(
            f"<tr{kind}>" + "".join(f"<td {a}>{escape(c)}</td>" for c, a in zip(row, align, strict=True)) + "</tr>"
        )
    out.append("</tbody>\n</table>")
    if data.notes:
        out.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in data.notes) + "</ul>")
    return "\n".join(out) + "\n"


@FORMATS.register(Format.rich)
def to_rich(data: TableData, wide: bool = False) -> Fit:
    """A rich renderable laid out for the console it is printed on (`terminal.Fit`); the notes follow the table."""
    headers, rows, numeric = display(data)
    headline = set(data.headline or headers)
    columns = [Column(h, numeric=n, headline=h in headline) for h, n in zip(headers, numeric, strict=True)]
    return Fit(columns, rows, title=data.title, notes=data.notes, wide=wide, transpose=True)


def render(data: TableData, fmt: str, wide: bool = False) -> Any:
    """`fmt` "md", "latex", "csv" or "html" gives a str; "rich" gives a rich renderable (`wide`: every column)."""
    return FORMATS.get(fmt)(data, wide=wide)


def render_table(
    name: str,
    store: Storage,
    fmt: str = "rich",
    suite: str | None = None,
    dataset: str | None = None,
    wide: bool = False,
    ci: bool = False,
) -> Any:
    """Gathers table `name` (or an alias) and renders it as `render` does; `ci`: measured means with 95% intervals."""
    return render(gather(name, store, suite=suite, dataset=dataset, ci=ci), fmt, wide=wide)
