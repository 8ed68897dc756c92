"""Demo organisations and staff accounts, with fresh passwords on every start.

Only for development: the passwords are random, printed for the person
running the demo, and replaced each time the demo or `lianban serve` starts.
"""

import secrets
from dataclasses import dataclass

from models import Organisation, Staff
from models.db import database
from services import staff as accounts

# Made-up organisations; the credit code passes the GB 32100 check.
AGENCY = ("agency", "济南泉城安居房地产经纪有限公司", "91370102MA3C7Q8K13", None)
HOTLINE = ("service_desk", "济南市12345市民服务热线", None, None)
WINDOW = ("registry_window", "济南市不动产登记中心历下分中心", None, None)
WATER = ("utility", "济南水务集团有限公司客户服务中心", None, "water")
OPERATOR = ("operator", "联办平台运维组", None, None)
SUPERVISION = ("operator", "济南市大数据局", None, None)

DEMO_STAFF = (
    ("demo-agent", "agent", AGENCY, "王经纪"),
    ("demo-service", "service", HOTLINE, "赵客服"),
    ("demo-window", "window", WINDOW, "孙窗口"),
    ("demo-water", "utility", WATER, "钱水务"),
    ("demo-admin", "admin", OPERATOR, "周管理"),
    ("demo-supervisor", "supervisor", SUPERVISION, "吴监督"),
)


@dataclass
class DemoStaff:
    username: str
    role: str
    organisation: str
    password: str


def ensure_demo_staff(app):
    """Create the demo organisations and staff if missing; set new passwords."""
    made = []
    with app.app_context(), database.connection_context():
        for username, role, (kind, name, credit_code, utility), person in DEMO_STAFF:
            organisation = Organisation.get_or_none(Organisation.name == name)
            if organisation is None:
                organisation = accounts.create_organisation(
                    kind, name, credit_code, utility
                )
            password = f"Demo-{secrets.token_urlsafe(9)}"
            member = Staff.get_or_none(Staff.username == username)
            if member is None:
                accounts.create_staff(username, role, organisation, person, password)
            else:
                accounts.set_password(member, password)
            made.append(DemoStaff(username, role, name, password))
    return made


def by_role(made, role):
    return next(member for member in made if member.role == role)
