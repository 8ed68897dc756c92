"""The HTTP API: one blueprint per resource, registered from this list."""

from api import (
    admin,
    agreements,
    auth,
    cases,
    delegations,
    lookup,
    partner,
    payments,
    registry,
    rosters,
    utility,
    window,
)

BLUEPRINTS = (
    auth.blp,
    cases.blp,
    delegations.blp,
    window.blp,
    lookup.blp,
    agreements.blp,
    payments.blp,
    registry.blp,
    partner.blp,
    utility.blp,
    rosters.blp,
    admin.blp,
)
