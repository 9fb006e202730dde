"""Render step for tables: a gathered `TableData` as a rich Table, Markdown, LaTeX (booktabs) or CSV.

Missing measurements (NaN) print as "–", never as a number. In rich, Markdown and LaTeX a column with a std sibling
(`TableData.pm`) prints as "mean ± std" (just the mean when there is one seed); CSV keeps both columns as numbers,
at full precision, for other programs to read. In a terminal (rich), a table wider than 12 columns is transposed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from pacebench.choices import Format
from pacebench.registry import Registry
from pacebench.report.tables import TableData

MISSING = "–"
NUMBER = ".2f"

Renderer = Callable[[TableData], Any]
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
            values = [v if v == MISSING or _missing(s) else f"{v} ± {cell(s, spec)}"
                      for v, s in zip(values, frame[data.pm[name]], strict=True)]
        headers.append(str(name))
        columns.append(values)
        numeric.append(pd.api.types.is_numeric_dtype(frame[name]))
    rows = [list(row) for row in zip(*columns, strict=True)] if columns else []
    return headers, rows, numeric


@FORMATS.register(Format.md)
def to_markdown(data: TableData) -> str:
    headers, rows, numeric = display(data)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [f"**{data.title}**", "", line(headers), "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"]
    out += [line(r) for r in rows]
    if data.notes:
        out += ["", *(f"- {note}" for note in data.notes)]
    return "\n".join(out) + "\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
                 ">": r"\textgreater{}", "–": "--", "±": r"$\pm$", "−": "$-$", "λ": r"$\lambda$", "σ": r"$\sigma$",
                 "×": r"$\times$"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text.replace("->", "→")).replace("→", r"$\rightarrow$")


@FORMATS.register(Format.latex)
def to_latex(data: TableData) -> str:
    """A booktabs table (needs \\usepackage{booktabs}); the notes go under the tabular in small print."""
    headers, rows, numeric = display(data)
    out = [r"\begin{table}[ht]", r"  \centering", rf"  \caption{{{latex_escape(data.title)}}}",
           rf"  \begin{{tabular}}{{{''.join('r' if n else 'l' for n in numeric)}}}", r"    \toprule",
           "    " + " & ".join(latex_escape(h) for h in headers) + r" \\", r"    \midrule"]
    out += ["    " + " & ".join(latex_escape(c) for c in row) + r" \\" for row in rows]
    out += [r"    \bottomrule", r"  \end{tabular}"]
    if data.notes:
        out += [r"  \par\smallskip", "  {\\footnotesize " + "\\\\\n   ".join(latex_escape(n) for n in data.notes) + "}"]
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


@FORMATS.register(Format.csv)
def to_csv(data: TableData) -> str:
    """The frame as CSV: std columns kept separate, numbers to 6 significant digits, missing values as "–"."""
    return data.frame.to_csv(index=False, na_rep=MISSING, float_format="%.6g", lineterminator="\n")


def transpose(headers: list[str], rows: list[list[str]], numeric: list[bool]
              ) -> tuple[list[str], list[list[str]], list[bool]]:
    """Rows become columns (headed by the row's text cells, e.g. "baseline measured"), numeric columns become rows."""
    labels = [" ".join(c for c, n in zip(row, numeric, strict=True) if not n and c) for row in rows]
    new_rows = [[h, *(row[i] for row in rows)] for i, (h, n) in enumerate(zip(headers, numeric, strict=True)) if n]
    return ["", *labels], new_rows, [False, *(True for _ in labels)]


WIDE = 12  # a terminal table with more columns than this (Table 1: 19 datasets + 4 means) is shown transposed


@FORMATS.register(Format.rich)
def to_rich(data: TableData) -> Any:
    """A rich.table.Table (print it with a rich Console); the notes form its caption. Wide tables come transposed."""
    from rich.table import Table
    from rich.text import Text

    headers, rows, numeric = display(data)
    if len(headers) > WIDE and rows:
        headers, rows, numeric = transpose(headers, rows, numeric)
    out = Table(title=data.title, caption="\n".join(data.notes) or None, caption_justify="left")
    for header, num in zip(headers, numeric, strict=True):
        out.add_column(Text(header), justify="right" if num else "left")
    for row in rows:
        out.add_row(*(Text(c) for c in row))
    return out


def render(data: TableData, fmt: str) -> Any:
    """`fmt` "md", "latex" or "csv" gives a str; "rich" gives a rich renderable."""
    return FORMATS.get(fmt)(data)
