"""The results database: SQLAlchemy models, Alembic migrations and a store API that returns plain records."""

from pacebench.store.api import Store, upgrade
from pacebench.store.records import EpochRecord, RunRecord

__all__ = ["EpochRecord", "RunRecord", "Store", "upgrade"]
