"""The submission journal in PostgreSQL, shared by many workers (the ``[postgres]`` extra: psycopg 3).

:class:`PostgresJournal` has everything :class:`~netverify_async.SqliteJournal` has, with the same states,
transitions and guarantee (the durable "may have been sent" record is committed before the first byte of the
body leaves), and adds a work queue for batches spread over several processes or hosts:

.. code-block:: python

    journal = PostgresJournal("postgresql://batch@db.internal/jobs", name="batch-2026-12")
    async with journal:
        await journal.load((ref, {"row": n}) for n, ref in enumerate(references))  # once; idempotent
        leases = await journal.claim(limit=10)  # on each worker
        ...  # rebuild each request from lease.payload, send it through a batch with journal=journal
        lost = await journal.renew(leases)  # well within lease_seconds

A claimed item carries a fencing token; a worker whose lease expired and was taken over gets
:class:`LeaseLostError` (a :class:`~netverify_async.JournalError`) from ``mark_sent`` and records nothing, so
it must not send. A worker killed at any instant leaves its item either claimable again once the lease expires
(nothing was sent) or ``sent``/``unknown`` (never handed out again; reconcile it). The rules are in
:mod:`netverify_async._pgjournal`.

psycopg's synchronous connection runs in a worker thread, so the journal works under asyncio and trio. Each
call takes at most ``operation_timeout`` seconds (default :data:`DEFAULT_OPERATION_TIMEOUT`) and can be
cancelled, even against a server that stopped answering. Connect directly or through a pooler in session mode:
transaction-mode pooling (pgbouncer ``pool_mode = transaction``) is not supported. Importing this module
imports psycopg; ``import netverify_async`` does not.
"""

from __future__ import annotations

from ._pgjournal import DEFAULT_LEASE_SECONDS as DEFAULT_LEASE_SECONDS
from ._pgjournal import DEFAULT_OPERATION_TIMEOUT as DEFAULT_OPERATION_TIMEOUT
from ._pgjournal import SCHEMA_VERSION as SCHEMA_VERSION
from ._pgjournal import Lease as Lease
from ._pgjournal import LeaseLostError as LeaseLostError
from ._pgjournal import PostgresJournal as PostgresJournal
from ._pgjournal import schema_name as schema_name

try:
    import psycopg as _psycopg  # noqa: F401 - fail at import time when the extra is missing
except ImportError as _exc:  # pragma: no cover
    raise ImportError(
        "netverify_async.postgres needs psycopg 3: pip install 'netverify-async[postgres]'"
    ) from _exc

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_OPERATION_TIMEOUT",
    "SCHEMA_VERSION",
    "Lease",
    "LeaseLostError",
    "PostgresJournal",
    "schema_name",
]
