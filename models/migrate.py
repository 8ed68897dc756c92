"""Schema migrations, the same files on SQLite and PostgreSQL."""

import logging
from pathlib import Path

from peewee_migrate import Router

from models.db import database

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def router():
    return Router(database.obj, migrate_dir=MIGRATIONS_DIR, ignore=["basemodel"])


def upgrade():
    """Apply every migration not yet applied."""
    done = router().run()
    log.info("migrations applied count=%d", len(done or []))
    return done


def create_revision(name):
    """Write a migration for the difference between the models and the schema."""
    import models

    return router().create(name, auto=models)
