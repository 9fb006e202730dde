"""Shared CLI pieces: the error-catching command group, consoles, option types and value parsers."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, get_type_hints

import typer
from rich.console import Console
from typer.core import TyperGroup

from pacebench.errors import PacebenchError, UsageError, one_line
from pacebench.settings import DATA_ENV, DB_ENV, default_db_url

console = Console()
err_console = Console(stderr=True)


class Group(TyperGroup):
    """Turns PacebenchError into one red line and its exit code (1 failure, 2 usage), never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except PacebenchError as exc:
            err_console.print(f"[bold red]error:[/] {one_line(exc)}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None


DbOption = Annotated[str | None, typer.Option("--db", envvar=DB_ENV, help="SQLAlchemy database URL.",
                                              show_default="sqlite:///results/pacebench.db")]


def db_url(db: str | None) -> str:
    """The --db value, else $PACEBENCH_DB, else results/pacebench.db (under $PACEBENCH_RESULTS if set)."""
    return db or default_db_url()
DataOption = Annotated[Path | None, typer.Option("--data-root", envvar=DATA_ENV,
                                                 help="Data root (default ./data).", show_default=False)]


def split_list(value: str | None) -> list[str] | None:
    """'a,b , c' -> ['a', 'b', 'c']; None or '' -> None."""
    if not value:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def int_list(value: str | None, option: str) -> list[int] | None:
    items = split_list(value)
    if items is None:
        return None
    try:
        return [int(v) for v in items]
    except ValueError:
        raise UsageError(f"{option} takes comma-separated integers, e.g. 0,1,2; got {value!r}") from None


def key_values(pairs: list[str] | None, option: str) -> dict[str, str]:
    """['lam=1', 'sigma=1.2'] (also 'lam=1,sigma=1.2') -> {'lam': '1', 'sigma': '1.2'}."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        for item in pair.split(","):
            name, sep, value = item.partition("=")
            if not sep or not name.strip() or not value.strip():
                raise UsageError(f"{option} takes NAME=VALUE, e.g. {option} lam=1; got {item!r}")
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
