"""The database handle, bound at startup from `DATABASE_URL`."""

import logging

import peewee
from playhouse.db_url import connect
from playhouse.pool import PooledDatabase

log = logging.getLogger(__name__)

database = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 5000,
    "synchronous": "normal",
}


def connect_database(url):
    """Open the database that `url` names and bind the proxy to it."""
    if url.startswith("sqlite+pool"):
        # Pooled connections move between the server's threads.
        db = connect(url, pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    elif url.startswith("sqlite"):
        db = connect(url, pragmas=SQLITE_PRAGMAS)
    else:
        db = connect(url)
    database.initialize(db)
    log.info("database bound backend=%s", type(db).__name__)
    return db


def connect_checked():
    """Connect, replacing a pooled connection that died with a database restart.

    A pool hands out connections opened earlier; one the server dropped fails
    only when used, so each is tried with a cheap query first and thrown away
    if that fails.
    """
    database.connect(reuse_if_open=True)
    # A SQLite file cannot go away under an open connection.
    if not isinstance(database.obj, PooledDatabase) or is_sqlite():
        return
    try:
        database.execute_sql("SELECT 1")
    except (peewee.OperationalError, peewee.InterfaceError) as error:
        log.warning("pooled connection was dead; replacing it error=%s", error)
        database.obj.manual_close()
        database.connect(reuse_if_open=True)


def is_sqlite():
    return isinstance(database.obj, peewee.SqliteDatabase)


def init_app(app):
    """Bind the database and give each request its own connection."""
    connect_database(app.config["DATABASE_URL"])

    @app.before_request
    def open_connection():
        connect_checked()

    @app.teardown_appcontext
    def close_connection(exc):
        if not database.is_closed():
            database.close()


def locked(query):
    """Add FOR UPDATE where the backend has it; SQLite locks the whole file."""
    if is_sqlite():
        return query
    return query.for_update()


def transaction():
    """Open a transaction for one use case.

    SQLite takes the write lock at BEGIN, because a read transaction that later
    writes fails at once with "database is locked" when another writer holds
    the lock, whatever the busy timeout.
    """
    if is_sqlite():
        return database.atomic(lock_type="IMMEDIATE")
    return database.atomic()


def retry_on_race(work):
    """Run `work()`, and once more if a concurrent insert won a unique key.

    On PostgreSQL two transactions can both find no row and both insert it.
    The loser's retry then finds the winner's row. SQLite never gets here,
    because its write transactions run one at a time.
    """
    try:
        return work()
    except peewee.IntegrityError:
        log.info("concurrent insert lost a unique-key race; retrying once")
        return work()
