"""The results database: SQLAlchemy models, Alembic migrations and a store API that returns plain records."""

from pacebench.store.api import STATUSES, Store, upgrade
from pacebench.store.records import EpochRecord, RunRecord

__all__ = ["STATUSES", "EpochRecord", "RunRecord", "Store", "upgrade"]
