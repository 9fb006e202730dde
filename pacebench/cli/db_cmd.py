"""`pacebench db ...`: the results database's schema."""

from __future__ import annotations

import typer

from pacebench.cli.common import DbOption, console, db_url

app = typer.Typer(help="Manage the results database (it also upgrades itself when opened).", no_args_is_help=True)


@app.command()
def upgrade(db: DbOption = None) -> None:
    """Create the database or migrate it to the newest schema revision."""
    from pacebench.store import Store  # lazy: SQLAlchemy and Alembic

    url = db_url(db)
    store = Store(url)
    console.print(f"database {store.display_url} is at the newest revision ({current_revision(url)})")


@app.command()
def current(db: DbOption = None) -> None:
    """Print the schema revision of the database (read-only: creates and migrates nothing)."""
    from pacebench.store.database import schema_revision  # lazy: SQLAlchemy and Alembic

    revision, head = schema_revision(db_url(db))
    note = "" if revision == head else f" (the newest is {head}: `pacebench db upgrade` migrates)"
    console.print(f"{revision or 'empty'}{note}")


def current_revision(url: str) -> str:
    from pacebench.store.database import schema_revision  # lazy: SQLAlchemy and Alembic

    return schema_revision(url)[0] or "empty"
