"""Placeholder: filled in by the module's own work."""

from flask_smorest import Blueprint

blp = Blueprint("lookup", __name__)
