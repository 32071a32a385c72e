"""`DjangoTask`: the task class of apps in a Django project (set by the Django fixup)."""

from __future__ import annotations

import functools
from typing import Any

from fleet.engine.task import Task


class DjangoTask(Task):
    """A `Task` that can wait for the surrounding database transaction before it is sent."""

    def delay_on_commit(self, *args: Any, **kwargs: Any) -> None:
        """`delay(*args, **kwargs)` once the current transaction commits; never if it rolls
        back; at once outside a transaction (Django's `transaction.on_commit`)."""
        self.apply_async_on_commit(args, kwargs)

    def apply_async_on_commit(self, args: Any = None, kwargs: Any = None,
                              using: str | None = None, **options: Any) -> None:
        """`apply_async(args, kwargs, **options)` once the transaction on database `using`
        (default: Django's default database) commits; never if it rolls back."""
        from django.db import transaction

        transaction.on_commit(functools.partial(self.apply_async, args, kwargs, **options),
                              using=using)
