"""The HTTP API: one blueprint per resource, registered from this list."""

from api import agreements, auth, cases, delegations, partner, payments, registry

BLUEPRINTS = (
    auth.blp,
    cases.blp,
    delegations.blp,
    agreements.blp,
    payments.blp,
    registry.blp,
    partner.blp,
)
