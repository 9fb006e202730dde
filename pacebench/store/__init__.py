"""The results store: a small `Storage` interface (base.py) with a SQL implementation made of parts (sql.py:
database.py, runs.py, queue.py over models.py and Alembic migrations) and an in-memory one (memory.py). Both hand
out plain records (records.py); rows.py converts between rows and records."""

from pacebench.store.base import Claimant, ClaimLost, Storage, StoreError
from pacebench.store.database import upgrade
from pacebench.store.memory import MemoryStore
from pacebench.store.records import EpochRecord, RunRecord, WorkerRecord
from pacebench.store.sql import Store

__all__ = [
    "ClaimLost",
    "Claimant",
    "EpochRecord",
    "MemoryStore",
    "RunRecord",
    "Storage",
    "Store",
    "StoreError",
    "WorkerRecord",
    "upgrade",
]
