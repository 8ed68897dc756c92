"""The migrations build exactly the tables and columns the models describe."""

import peewee
import pytest
from peewee_migrate import Router

from models import ALL_MODELS
from models.db import database
from models.migrate import MIGRATIONS_DIR


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda model: model.__name__)
def test_migrated_columns_match_model(app, model):
    table = model._meta.table_name
    migrated = {column.name for column in database.get_columns(table)}
    described = {field.column_name for field in model._meta.sorted_fields}

    assert migrated == described


def test_no_table_without_model(app):
    tables = set(database.get_tables()) - {"migratehistory"}

    assert tables == {model._meta.table_name for model in ALL_MODELS}


def test_delegations_gain_their_business_on_upgrade(tmp_path):
    db = peewee.SqliteDatabase(str(tmp_path / "upgrade.db"))
    router = Router(db, migrate_dir=MIGRATIONS_DIR, ignore=["basemodel"])
    router.run("004_token_families")
    now = "2026-12-04 08:00:00"
    statements = [
        "INSERT INTO unit (id, unit_code, location, created_at, updated_at) "
        f"VALUES (1, 'U1', 'somewhere', '{now}', '{now}')",
        "INSERT INTO business (id, business_no, business_type, unit_id, location, "
        "registration_status, payload, payload_digest, created_at, updated_at) "
        f"VALUES (7, 'B7', '二手房买卖', 1, 'somewhere', 'accepted', 'x', 'd', "
        f"'{now}', '{now}')",
        "INSERT INTO citizen (id, openid, name, id_type, id_number, id_index, "
        f"verified_at, created_at) VALUES (3, 'o3', 'n', '居民身份证', 'i', 'x', "
        f"'{now}', '{now}')",
        'INSERT INTO "case" (id, business_id, citizen_id, status, opened_at) '
        f"VALUES (5, 7, 3, 'open', '{now}')",
        "INSERT INTO delegation (id, case_id, granted_by_id, agency_name, "
        "agency_credit_code, scope, expires_at, created_at) VALUES (9, 5, 3, "
        f"'agency', '91370100MA3C5LXX1K', 'view', '{now}', '{now}')",
    ]
    for statement in statements:
        db.execute_sql(statement)

    router.run()

    row = db.execute_sql(
        "SELECT business_id, case_id FROM delegation WHERE id = 9"
    ).fetchone()
    assert row == (7, 5)
    columns = {c.name: c for c in db.get_columns("delegation")}
    assert columns["business_id"].null is False
    assert columns["case_id"].null is True
