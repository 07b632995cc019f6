"""Optuna storage: any SQLAlchemy URL through Optuna's RDBStorage, with
heartbeats so that a trial of a dead worker is failed and retried.

Heartbeat timing: a worker writes a heartbeat every `HPSEARCH_HEARTBEAT`
seconds (default 30); a trial whose heartbeat is older than twice that is
stale, failed by the next worker that asks for a trial, and re-queued by
Optuna's RetryHeartbeatStaleTrialCallback with the same parameters.
"""

from __future__ import annotations

import os
from pathlib import Path

from hpsearch.search.errors import UserError

DEFAULT_STORAGE = "sqlite:///mlruns/optuna.db"
MAX_RETRY = 2


def resolve_storage_url(url: str | None) -> str:
    return absolute_sqlite(url or os.environ.get("HPSEARCH_STORAGE") or DEFAULT_STORAGE)


def absolute_sqlite(url: str) -> str:
    """`sqlite:///mlruns/x.db` is relative to the working directory; make it
    absolute once, so the URL recorded in the stores means one file, and so
    libraries that cache engines by URL never mix two directories."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str(Path(url.removeprefix(prefix)).resolve())
    return url


def heartbeat_seconds() -> int:
    return max(1, int(os.environ.get("HPSEARCH_HEARTBEAT", "30")))


def retry_callback(max_retry: int | None = None):
    """Optuna's retry callback as every retry path uses it (a stale heartbeat,
    a dead owner, an interrupt, an error): a WAITING copy of the trial with its
    parameters and user attributes. Intermediate values are not copied: a
    resumed trial reports the epochs of its checkpoint again, and one that
    starts over must not keep the values of the attempt it replaces."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    return RetryHeartbeatStaleTrialCallback(max_retry=max_retry, inherit_intermediate_values=False)


def open_storage(url: str | None, create: bool = True):
    """An RDBStorage with heartbeats and retry; a bad URL is one line."""
    from optuna.storages import RDBStorage

    url = resolve_storage_url(url)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not create and not path.exists():
            raise UserError(f"Optuna storage {url} does not exist (no file {path}); run a study first")
        path.parent.mkdir(parents=True, exist_ok=True)
    hb = heartbeat_seconds()
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        storage = RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=hb,
            grace_period=2 * hb,
            heartbeat_stale_trial_callback=retry_callback(MAX_RETRY),
        )
    except Exception as e:  # SQLAlchemy raises ArgumentError/OperationalError, drivers their own
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"Optuna storage {url} cannot be opened: {detail}") from None
    if url.startswith("sqlite"):
        serialize_sqlite_transactions(storage.engine)
    return storage


def serialize_sqlite_transactions(engine) -> None:
    """Every transaction on a SQLite storage takes the database's write lock
    when it begins (BEGIN IMMEDIATE). Optuna hands a queued trial to one
    worker by reading its state and setting it to RUNNING in one transaction
    `SELECT ... FOR UPDATE`, which SQLite ignores: under pysqlite's deferred
    transactions two processes both read WAITING and both run the trial (seen:
    2 processes each enqueueing and asking 150 trials, 1 trial run twice; a
    worker then died on "Cannot tell a COMPLETE trial"). This is SQLAlchemy's
    recipe for pysqlite (its SQLite dialect docs, "Serializable isolation");
    the connections made while Optuna set the storage up are dropped so that
    every later one gets it."""
    import sqlalchemy

    @sqlalchemy.event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, connection_record):
        dbapi_connection.isolation_level = None  # pysqlite emits no BEGIN of its own

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()
