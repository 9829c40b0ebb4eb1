"""How long user_svc keeps an uploaded image. A succeeded conversion's original is deleted at
once (the PDF is what is kept); a failed or cancelled one's is kept for
FAILED_UPLOAD_RETENTION_SECONDS, so that JobService.RetryJob can convert it again, and then
deleted by the periodic sweep."""

from __future__ import annotations

import logging
import time

import peewee

from internal import storage
from internal.data import write_transaction
from internal.services.user_svc.models import ConversionRow

log = logging.getLogger(__name__)


class UploadRetention:
    def __init__(self, database: peewee.Database, store: storage.Storage, seconds: float) -> None:
        self.database, self.store, self.seconds = database, store, seconds

    def sweep_interval(self) -> float:
        """How often to sweep: often enough that an upload outlives its retention by little."""
        return min(60.0, max(0.5, self.seconds / 4))

    def sweep(self, limit: int = 500) -> int:
        """Deletes the uploads whose retention has ended; their count."""
        with self.database.connection_context():
            expired = list(
                ConversionRow.select()
                .where(ConversionRow.upload_kept_until < time.time())
                .order_by(ConversionRow.upload_kept_until)
                .limit(limit)
            )
        for row in expired:
            self.store.delete(row.source_key)
            with self.database.connection_context(), write_transaction(self.database):
                # Unless a newer outcome changed it meanwhile (a retry that succeeded).
                ConversionRow.update(upload_kept_until=None).where(
                    (ConversionRow.id == row.id)
                    & (ConversionRow.upload_kept_until == row.upload_kept_until)
                ).execute()
            log.info("conversion %s: its upload's retention ended; deleted", row.id)
        return len(expired)
