"""The control plane's transactional outbox.

Rows are written only by database triggers (``convergence/mirror/triggers.py``) in the same transaction
as the change they record, so no write path (ORM, ``QuerySet.update``, raw SQL, admin) can bypass it.
The mirror drain (``convergence/mirror/services.py``) delivers them to the warehouse central dataset
and deletes exactly the rows it delivered."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class OutboxEvent(models.Model):
    """One committed change of a mirrored row: which table, which key (as text), which operation
    (``I``/``U``/``D``, or ``R`` for a resync request) and when. The drain reads the row's current
    state at delivery time, so the payload is the key alone."""

    id = models.BigAutoField(primary_key=True)
    table_name = models.CharField(max_length=63, help_text="Database table of the changed row.")
    row_pk = models.CharField(max_length=100, help_text="The key column the trigger records, as text.")
    operation = models.CharField(max_length=1)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        verbose_name = "outbox event"
        # min(created_at) is the mirror lag that /health/ready reports.
        indexes = [models.Index(fields=["created_at"], name="outbox_created_idx")]

    def __str__(self) -> str:
        return f"{self.operation} {self.table_name}:{self.row_pk}"
