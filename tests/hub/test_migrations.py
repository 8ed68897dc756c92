"""The migrations build exactly the tables and columns the models describe."""

import pytest

from models import ALL_MODELS
from models.db import database


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda model: model.__name__)
def test_migrated_columns_match_model(app, model):
    table = model._meta.table_name
    migrated = {column.name for column in database.get_columns(table)}
    described = {field.column_name for field in model._meta.sorted_fields}

    assert migrated == described


def test_no_table_without_model(app):
    tables = set(database.get_tables()) - {"migratehistory"}

    assert tables == {model._meta.table_name for model in ALL_MODELS}
