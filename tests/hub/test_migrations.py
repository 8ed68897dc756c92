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


def _insert(db, table, **values):
    """Insert a row, giving each other required column a value of its type."""
    for column in db.get_columns(table):
        if column.name in values or column.null or column.primary_key:
            continue
        kind = column.data_type.upper()
        if "INT" in kind:
            values[column.name] = 1
        elif "DATE" in kind or "TIME" in kind:
            values[column.name] = "2026-12-04 08:00:00"
        else:
            values[column.name] = "x"
    names = ", ".join(f'"{name}"' for name in values)
    marks = ", ".join("?" for _ in values)
    db.execute_sql(
        f'INSERT INTO "{table}" ({names}) VALUES ({marks})', list(values.values())
    )


def test_orders_become_orders_with_one_share_on_upgrade(tmp_path):
    db = peewee.SqliteDatabase(str(tmp_path / "upgrade.db"))
    router = Router(db, migrate_dir=MIGRATIONS_DIR, ignore=["basemodel"])
    router.run("019_meter_readings")
    _insert(db, "unit", id=1, unit_code="U1")
    _insert(db, "business", id=7, business_no="B7", unit_id=1)
    _insert(db, "citizen", id=3, openid="o3")
    _insert(db, "case", id=5, business_id=7, citizen_id=3)
    _insert(db, "utility", id=2, code="water")
    _insert(db, "transfer", id=11, case_id=5, utility_id=2, account_no="A1")
    states = {21: "paid", 22: "paid_twice", 23: "closed", 24: "paid", 25: "pending"}
    for payment_id, status in states.items():
        _insert(
            db,
            "payment",
            id=payment_id,
            transfer_id=11,
            out_trade_no=f"LB{payment_id}",
            amount_fen=100 * payment_id,
            status=status,
        )
    # Payment 24 was refunded when its case was withdrawn.
    _insert(db, "refund", id=1, payment_id=24, out_refund_no="RF24", amount_fen=2400)
    _insert(db, "outbox_message", kind="report_payment", ref_id=21, payload="{}")

    router.run()

    shares = db.execute_sql(
        "SELECT id, payment_id, transfer_id, amount_fen, utility_payment_id, status "
        "FROM payment_share ORDER BY id"
    ).fetchall()
    assert shares == [
        (21, 21, 11, 2100, "LB21", "credited"),
        (22, 22, 11, 2200, "LB22", "paid_twice"),
        (23, 23, 11, 2300, "LB23", "unpaid"),
        (24, 24, 11, 2400, "LB24", "refunded"),
        (25, 25, 11, 2500, "LB25", "unpaid"),
    ]
    cases = db.execute_sql("SELECT DISTINCT case_id FROM payment").fetchall()
    assert cases == [(5,)]
    # The order written for a report still finds its share by ref_id.
    [(ref_id,)] = db.execute_sql(
        "SELECT ref_id FROM outbox_message WHERE kind = 'report_payment'"
    ).fetchall()
    assert ref_id in {share[0] for share in shares}
    columns = {c.name: c for c in db.get_columns("payment")}
    assert columns["transfer_id"].null is True
    # Rebuilding the table kept the one open order per transfer.
    indexes = {index.name for index in db.get_indexes("payment")}
    assert "payment_one_open_per_transfer" in indexes
