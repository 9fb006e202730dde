"""Tables that read cleanly at any terminal width: how every rich table of pacebench is printed.

A `Fit` is a rich renderable laid out when it is printed, for the console's width. Each column is as wide as its
longest line where the whole table fits; otherwise narrower, but never narrower than its longest piece of text: text
wraps at spaces, a long name also after "-", "_", "/", "@" or "=" ("oxford_" / "flowers102"), and a number or a
"mean ± std" cell stays on one line. Where the table cannot fit that way it shows its headline columns and says
which it hid; failing that (or where every column is asked for, `wide`) it is shown transposed, its numbers' rows
becoming columns, where the table allows it; failing everything each row is printed as a list of "header: value"
lines. Nothing is ever cut ("…").

The rendering only needs rich, so the CLI's own tables (`runs`, `status`, `suites`, ...) use it as the report does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

Cell = str | Text


@dataclass(frozen=True)
class Column:
    """One column: its header; `numeric` columns are right-aligned and never wrapped; `headline` columns are the
    ones kept when the table is too wide for all of them."""

    header: str
    numeric: bool = False
    headline: bool = True


GAP = 2  # between two columns: a padding space and the (blank) column rule of `STYLE`
STYLE = {"box": box.SIMPLE_HEAD, "show_edge": False, "pad_edge": False, "padding": (0, 1, 0, 0)}


def _text(cell: Cell) -> Text:
    return cell if isinstance(cell, Text) else Text(cell)


def pieces(text: str) -> list[list[str]]:
    """The words of a text, each cut after any "-", "_", "/", "@" or "=" it holds: where a line may break ("16-shot"
    -> "16-", "shot"; "imagenet_sketch" -> "imagenet_", "sketch"; "vit_b16@1234abcd" -> "vit_", "b16@", "1234abcd";
    "sigma=1.2" -> "sigma=", "1.2")."""
    return [re.findall(r"[^-_/@=]+[-_/@=]*|[-_/@=]+", word) for word in text.split()]


def wrap(text: str, width: int) -> str:
    """The text broken into lines of at most `width` cells where `pieces` allows, at spaces while they suffice; a
    piece longer than `width` keeps its own line (a column is never narrower than its longest piece)."""
    lines: list[str] = []
    line = ""
    for word in pieces(text):
        whole = line + (" " if line else "") + "".join(word)
        if cell_len(whole) <= width:
            line = whole
            continue
        if line and cell_len("".join(word)) <= width:  # a word that fits a line of its own is not cut
            lines.append(line)
            line = "".join(word)
            continue
        for i, piece in enumerate(word):
            joined = line + (" " if line and i == 0 else "") + piece
            if not line or cell_len(joined) <= width:
                line = joined
            else:
                lines.append(line)
                line = piece
    return "\n".join([*lines, line])


def _longest(texts: Sequence[str], split: Callable[[str], list[str]]) -> int:
    return max((cell_len(p) for t in texts for p in split(t)), default=0)


def _pieces_of(text: str) -> list[str]:
    return [p for word in pieces(text) for p in word]


Span = tuple[int, int, int, int]  # a column's narrowest width, its width without cutting a word, its cells' widest
# line, its widest line header included


def _span(column: Column, cells: Sequence[Cell]) -> Span:
    """How wide a column can be: never below its longest piece of text (a styled cell: its longest word) or below
    a whole number cell; at best its longest word, so that names stay whole; at most its longest line."""
    texts = [_text(c).plain for c in cells]
    plain = [c for c in cells if isinstance(c, str)]
    styled = [c.plain for c in cells if isinstance(c, Text)]
    body = max((cell_len(line) for t in texts for line in t.splitlines() or [""]), default=0)
    header = _longest([column.header], _pieces_of)
    if column.numeric:
        narrowest = whole = max([header, *(cell_len(t) for t in texts)])
    else:
        narrowest = max(header, _longest(plain, _pieces_of), _longest(styled, str.split))
        whole = max(narrowest, _longest(texts, str.split))
    widest = max(body, cell_len(column.header), narrowest)
    return narrowest, min(whole, widest), max(body, narrowest), widest


def _height(header: str, width: int) -> int:
    return wrap(header, width).count("\n") + 1


def _fill(out: list[int], goal: Sequence[int], room: int, cheapest: bool = False) -> list[int]:
    """`out` widened a cell at a time while `room` lasts: toward `goal`, the column furthest below it first, or with
    `cheapest` the one nearest to it (so that as many columns as possible reach their goal)."""
    out = list(out)
    for _ in range(room - sum(out)):
        lacking = [(g - w, i) for i, (g, w) in enumerate(zip(goal, out, strict=True)) if g > w]
        if not lacking:
            break
        out[(min if cheapest else max)(lacking)[1]] += 1
    return out


def widths(spans: Sequence[Span], headers: Sequence[str], room: int) -> list[int] | None:
    """Column widths within `room` cells (gaps excluded), or None when even the narrowest do not fit.

    Each column gets its widest where all fit. Otherwise each starts at its narrowest and the extra room goes first
    to keeping names whole (each column's longest word), then to unwrapping cells (a wrapped cell costs its row a
    line), the columns nearest to it first, then to lowering the tallest headers a line at a time, then to the
    headers' remaining lines.
    """
    narrow = [lo for lo, _, _, _ in spans]
    whole = [mid for _, mid, _, _ in spans]
    body = [cells for _, _, cells, _ in spans]
    wide = [hi for _, _, _, hi in spans]
    if sum(wide) <= room:
        return wide
    if sum(narrow) > room:
        return None
    out = _fill(_fill(narrow, whole, room, cheapest=True), body, room, cheapest=True)
    while True:
        heights = [_height(h, w) for h, w in zip(headers, out, strict=True)]
        top = max(heights, default=1)
        if top == 1:
            break
        lower = {
            i: next(w for w in range(out[i] + 1, wide[i] + 2) if _height(headers[i], w) < top or w > wide[i])
            for i, h in enumerate(heights)
            if h == top
        }
        if any(w > wide[i] for i, w in lower.items()) or sum(w - out[i] for i, w in lower.items()) > room - sum(out):
            break
        out = [lower.get(i, w) for i, w in enumerate(out)]
    return _fill(out, wide, room)


@dataclass
class Fit:
    """A table laid out for the console it is printed on (see the module docstring).

    `rows` hold plain strings or rich `Text`s (for colour); `notes` print under the table, wrapped at the console's
    width; `hidden` says what to do to see hidden columns; `transpose` allows the transposed layout (a table of
    numbers whose text columns label its rows).
    """

    columns: Sequence[Column]
    rows: Sequence[Sequence[Cell]]
    title: str | None = None
    notes: Sequence[str] = ()
    wide: bool = False
    transpose: bool = False
    hidden: str = "--wide shows all"

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self.title:
            yield Text(self.title, style="bold")
        yield from self._body(options.max_width)
        for note in self.notes:
            yield Text(note, style="dim")

    def layout(self, room: int) -> tuple[str, list[int], Table | None]:
        """How the table is shown in `room` cells: "table", "transposed" or "records", which columns it keeps, and
        the rich table (None for records)."""
        everything = list(range(len(self.columns)))
        headline = [i for i, c in enumerate(self.columns) if c.headline]
        choices = [everything] if self.wide or len(headline) == len(everything) else [everything, headline]
        for keep in choices:
            table = self._table(keep, room)
            if table is not None:
                return "table", keep, table
        keep = choices[-1]
        table = self._transposed(keep, room) if self.transpose and self.rows else None
        return ("transposed", keep, table) if table is not None else ("records", keep, None)

    def _body(self, room: int) -> Iterator[Table | Text]:
        _, keep, table = self.layout(room)
        if table is not None:
            yield table
        else:
            yield from self._records(keep)
        yield from self._hidden_note(keep)

    def _hidden_note(self, keep: list[int]) -> Iterator[Text]:
        hidden = [c.header for i, c in enumerate(self.columns) if i not in keep]
        if hidden:
            yield Text(
                f"{len(hidden)} column{'s' if len(hidden) > 1 else ''} hidden ({', '.join(hidden)}); {self.hidden}",
                style="italic",
            )

    def _table(
        self,
        keep: list[int],
        room: int,
        columns: Sequence[Column] | None = None,
        rows: Sequence[Sequence[Cell]] | None = None,
    ) -> Table | None:
        columns = [self.columns[i] for i in keep] if columns is None else columns
        rows = [[row[i] for i in keep] for row in self.rows] if rows is None else rows
        spans = [_span(c, [row[j] for row in rows]) for j, c in enumerate(columns)]
        sizes = widths(spans, [c.header for c in columns], room - GAP * (len(columns) - 1))
        if sizes is None:
            return None
        table = Table(**STYLE)  # type: ignore[arg-type]
        for column, size in zip(columns, sizes, strict=True):
            table.add_column(
                Text(wrap(column.header, size)),
                width=size,
                no_wrap=column.numeric,
                justify="right" if column.numeric else "left",
                overflow="fold",
            )
        for row in rows:
            table.add_row(
                *(_text(wrap(c, size) if isinstance(c, str) else c) for c, size in zip(row, sizes, strict=True))
            )
        return table

    def _transposed(self, keep: list[int], room: int) -> Table | None:
        """Rows become columns, headed by their text cells ("baseline measured"); numeric columns become rows."""
        text = [i for i in keep if not self.columns[i].numeric]
        numbers = [i for i in keep if self.columns[i].numeric]
        labels = [" ".join(_text(row[i]).plain for i in text if _text(row[i]).plain) for row in self.rows]
        columns = [Column(""), *(Column(label, numeric=True) for label in labels)]
        rows = [[self.columns[i].header, *(row[i] for row in self.rows)] for i in numbers]
        return self._table([], room, columns, rows)

    def _records(self, keep: list[int]) -> Iterator[Text]:
        """The last resort: each row as "header: value" lines, a blank line between rows."""
        for n, row in enumerate(self.rows):
            if n:
                yield Text("")
            for i in keep:
                yield Text.assemble((f"{self.columns[i].header}: ", "bold"), _text(row[i]))
