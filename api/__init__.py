"""The HTTP API: one blueprint per resource, registered from this list."""

from api import (
    admin,
    agreements,
    auth,
    cases,
    deadlines,
    delegations,
    evidence,
    lookup,
    notifications,
    partner,
    payments,
    registry,
    rosters,
    supervision,
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
    evidence.blp,
    deadlines.blp,
    supervision.blp,
    notifications.blp,
)
