"""Shared CLI pieces: the error-catching command group, consoles, option types and value parsers."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, get_type_hints

import typer
from rich.console import Console
from rich.markup import escape
from typer._click.exceptions import NoArgsIsHelpError  # typer vendors click
from typer._click.exceptions import UsageError as ClickUsageError
from typer.core import TyperCommand, TyperGroup

from pacebench.errors import PacebenchError, UsageError, one_line
from pacebench.plan.spec import TRAIN_FIELDS
from pacebench.plan.suites import all_suites
from pacebench.report import select
from pacebench.settings import DATA_ENV, DB_ENV, default_db_url
from pacebench.values import INT_MAX

console = Console()
err_console = Console(stderr=True)


def flow(text: str | None) -> str | None:
    """A docstring as paragraphs that wrap at the terminal's width: the lines of each paragraph joined, so that
    `--help` never breaks a sentence where its source line ended (a paragraph starting with click's "\b" is kept
    as written)."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(
        p if p.startswith("\b") else " ".join(line.strip() for line in p.splitlines()) for p in paragraphs
    )


def flow_help(command: Any) -> None:
    """`flow` on the help of `command` and of every command under it."""
    command.help = flow(command.help)
    for sub in getattr(command, "commands", {}).values():
        flow_help(sub)


class Group(TyperGroup):
    """The root command group. Its commands' help flows as paragraphs (`flow`). It turns PacebenchError, and click's
    own usage errors (a bad choice, an unknown option), into one red line and its exit code (1 failure, 2 usage),
    never a traceback or a boxed panel."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        flow_help(self)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except PacebenchError as exc:
            _fail(one_line(exc), exc.exit_code)
        except NoArgsIsHelpError:
            raise
        except ClickUsageError as exc:
            where = f"; see '{exc.ctx.command_path} --help'" if exc.ctx is not None else ""
            message = " ".join(exc.format_message().split()).replace("Value error, ", "").rstrip(".")
            _fail(f"{message}{where}", 2)


def _fail(message: str, code: int) -> None:
    # the message is plain text: "[postgres]" or "[datasets.cifar]" in it must print as written, not as markup
    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code) from None


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turns a failure to write `path` (a directory, an unwritable folder, /proc, a full disk) into one line."""
    try:
        yield
    except OSError as exc:
        raise PacebenchError(f"cannot write {path}: {exc.strerror or exc}; choose another --out") from None


def _method_lists() -> dict[str, str]:
    from pacebench.core.methods import ABLATIONS, EFFICIENCY, METHODS  # lazy: torch, only when a help shows them

    return {
        "methods": ", ".join(METHODS.names()),
        "table6": ", ".join(ABLATIONS),
        "efficiency": ", ".join(EFFICIENCY),
        "hyperparameters": ", ".join(
            dict.fromkeys(n for _, cls in METHODS.items() for n, _, _ in cls.hyperparameters())
        ),
    }


def _sweep_lists() -> dict[str, str]:
    from pacebench.plan.sweeps import SWEEPS  # lazy: the registries import torch

    return {"sweeps": ", ".join(SWEEPS.names())}


def _adapter_lists() -> dict[str, str]:
    from pacebench.core.adapters import KINDS  # lazy: torch

    return {"adapters": ", ".join(KINDS)}


def _light_lists() -> dict[str, str]:
    entries = {entry.name: entry for _, entry in select.tables().items()}
    return {
        "suites": ", ".join(all_suites()),
        "training_settings": ", ".join(TRAIN_FIELDS),
        "tables": ", ".join("/".join((*e.aliases[:1], e.name)) for e in entries.values()),
        "figures": ", ".join(select.FIGURES.names()),
    }


LISTS: dict[str, Callable[[], dict[str, str]]] = {
    name: source
    for source, names in (
        (_method_lists, ("methods", "table6", "efficiency", "hyperparameters")),
        (_sweep_lists, ("sweeps",)),
        (_adapter_lists, ("adapters",)),
        (_light_lists, ("suites", "training_settings", "tables", "figures")),
    )
    for name in names
}  # what `{name}` in an option's help stands for: a list read from its registry when the help is shown


class _Lists(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return LISTS[key]()[key]


class RegistryHelp(TyperCommand):
    """A command whose option help may name registry lists as `{methods}`, `{tables}`, ... (see `LISTS`).

    They are filled in only when the help is shown, so `pacebench --help` and every other command start without
    importing torch or pandas, and the help can never fall behind the registries.
    """

    def format_help(self, ctx: Any, formatter: Any) -> None:
        for param in self.params:
            text = getattr(param, "help", None)
            if text and "{" in text:
                param.help = text.format_map(_Lists())  # type: ignore[attr-defined]
        super().format_help(ctx, formatter)


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar=DB_ENV,
        show_default=False,
        help="SQLAlchemy database URL (default: the SQLite file results/pacebench.db).",
    ),
]


def db_url(db: str | None) -> str:
    """The --db value, else $PACEBENCH_DB, else results/pacebench.db (under $PACEBENCH_RESULTS if set)."""
    return db or default_db_url()


DataOption = Annotated[
    Path | None, typer.Option("--data-root", envvar=DATA_ENV, help="Data root (default ./data).", show_default=False)
]


def split_list(value: str | None) -> list[str] | None:
    """'a,b , c' -> ['a', 'b', 'c']; None or '' -> None."""
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def int_list(value: str | None, option: str) -> list[int] | None:
    """'0,1,2' -> [0, 1, 2]; each value must lie in 0..INT_MAX; None when the option was not given, and an option
    given with no number in it ('', ',,,') is an error, never a silent default."""
    if value is None:
        return None
    items = split_list(value)
    if not items:
        raise UsageError(f"{option} takes comma-separated integers, e.g. 0,1,2; got {value!r}")
    try:
        numbers = [int(v) for v in items]
    except ValueError:
        raise UsageError(f"{option} takes comma-separated integers, e.g. 0,1,2; got {value!r}") from None
    bad = [n for n in numbers if not 0 <= n <= INT_MAX]
    if bad:
        raise UsageError(f"{option}: {bad[0]} is out of range; use integers from 0 to {INT_MAX}")
    return numbers


def key_values(pairs: list[str] | None, option: str) -> dict[str, str]:
    """['lam=1', 'sigma=1.2'] (also 'lam=1,sigma=1.2') -> {'lam': '1', 'sigma': '1.2'}."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        for item in pair.split(","):
            name, sep, value = item.partition("=")
            if not sep or not name.strip() or not value.strip():
                raise UsageError(f"{option} takes NAME=VALUE, e.g. {option} lam=1; got {item!r}")
            if name.strip() in out:
                raise UsageError(f"{option} {name.strip()} is given twice; give it once")
            out[name.strip()] = value.strip()
    return out


def grid_values(pairs: list[str] | None) -> dict[str, list[str]]:
    """['lambda=0.5,1', 'sigma=0.8,1.2'] -> {'lambda': ['0.5', '1'], 'sigma': ['0.8', '1.2']}."""
    out: dict[str, list[str]] = {}
    for pair in pairs or []:
        name, sep, values = pair.partition("=")
        items = split_list(values)
        if not sep or not name.strip() or not items:
            raise UsageError(f"--grid takes NAME=V1,V2,..., e.g. --grid lambda=0.5,1; got {pair!r}")
        out[name.strip()] = items
    return out


def shared_options(template: Callable[..., None]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Adds the parameters of `template` (options declared once) to a command whose first parameter receives them
    bundled as one namespace, so that several commands share one definition of their common options."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(command, eval_str=True).parameters.values())[1:]
        shared = list(inspect.signature(template, eval_str=True).parameters.values())
        names = [p.name for p in shared]
        clash = {p.name for p in own} & set(names)
        if clash:
            raise TypeError(f"{command.__name__} redeclares shared option(s) {sorted(clash)}")

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> None:
            bundle = SimpleNamespace(**{name: kwargs.pop(name) for name in names})
            return command(bundle, **kwargs)

        hints = {**get_type_hints(template, include_extras=True), **get_type_hints(command, include_extras=True)}
        wrapper.__signature__ = inspect.Signature([*own, *shared])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: hints[p.name] for p in [*own, *shared]}
        return wrapper

    return decorate
