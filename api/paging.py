"""Paged lists: `page` and `page_size` in the query, an envelope with the total.

A page past the end is an empty list that still reports the total. Page 0 or a
size below 1 is refused; a size above PAGE_SIZE_MAX is cut to it, and the
answer's `page_size` says so.
"""

import functools

from flask import current_app
from marshmallow import Schema, fields, post_load, validate

DEFAULT_PAGE_SIZE = 20
# Far beyond any list here, and small enough that the row offset it makes
# stays within the databases' 64-bit integers.
MAX_PAGE = 1_000_000


class PageArgs(Schema):
    page = fields.Integer(
        load_default=1,
        validate=validate.Range(
            min=1, max=MAX_PAGE, error=f"page must be from 1 to {MAX_PAGE}."
        ),
        metadata={"description": "1 for the first page"},
    )
    page_size = fields.Integer(
        load_default=DEFAULT_PAGE_SIZE,
        validate=validate.Range(min=1, error="page_size must be at least 1."),
        metadata={"description": "Items per page; larger values are capped"},
    )

    @post_load
    def cap(self, data, **kwargs):
        data["page_size"] = min(data["page_size"], current_app.config["PAGE_SIZE_MAX"])
        return data


@functools.cache
def envelope(item_schema):
    """Return the schema of a page of `item_schema` items, made once per item."""
    name = item_schema.__name__.removesuffix("Schema").removesuffix("View")
    return Schema.from_dict(
        {
            "items": fields.List(fields.Nested(item_schema)),
            "total": fields.Integer(metadata={"description": "Items on all pages"}),
            "page": fields.Integer(),
            "page_size": fields.Integer(
                metadata={"description": "The size used, after any cap"}
            ),
        },
        name=f"{name}Page",
    )


def page(query, args, view=None):
    """Return one page of a peewee query; `view` turns each row into its answer."""
    total = query.count()
    rows = list(query.paginate(args["page"], args["page_size"]))
    return {
        "items": [view(row) for row in rows] if view else rows,
        "total": total,
        "page": args["page"],
        "page_size": args["page_size"],
    }
