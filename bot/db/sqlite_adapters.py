"""sqlite3 adapters so bulk writes through the raw driver store exactly what SQLAlchemy stores.

SQLAlchemy's SQLite types keep dates as 'YYYY-MM-DD', datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff'
(naive, UTC here) and decimals as numbers. The importers bypass SQLAlchemy's per-value processing for
speed, so the driver must convert the same way. Python 3.12 deprecates sqlite3's implicit defaults and
asks applications to register their own: these are ours.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from decimal import Decimal


def _datetime(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


sqlite3.register_adapter(date, date.isoformat)
sqlite3.register_adapter(datetime, _datetime)
sqlite3.register_adapter(Decimal, str)
