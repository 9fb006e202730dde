"""Alembic environment: pacebench passes an open connection in `config.attributes["connection"]`, inside a
transaction that holds the schema lock; every migration runs in it (pacebench makes SQLite's DDL transactional
too), so a failed upgrade changes nothing."""

from alembic import context

from pacebench.store.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
