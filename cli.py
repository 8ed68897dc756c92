"""The `lianban` command: serve, demo, worker, and operators' tools."""

import contextlib
import logging
import signal
import sys
import threading
from pathlib import Path

import click
import peewee

from api.requestlog import configure_logging

log = logging.getLogger("lianban")


@click.group()
@click.option("--verbose", is_flag=True, help="Log at DEBUG level.")
def main(verbose):
    """Joint handling of property registration and utility transfer."""
    configure_logging(logging.DEBUG if verbose else logging.INFO)


@main.command()
@click.option(
    "--port", default=5000, show_default=True, help="Port of the hub on 127.0.0.1."
)
@click.option(
    "--var-dir",
    default="var",
    show_default=True,
    help="Folder for the database, secrets and the peers' keys and logs.",
)
def serve(port, var_dir):
    """Run the hub with its partner peers on loopback until Ctrl-C."""
    from demo.stack import start_stack
    from demo.staff import ensure_demo_staff

    stack = start_stack(Path(var_dir), port=port)
    buyers = register_demo_businesses(stack)
    made = ensure_demo_staff(stack.app)
    click.echo(f"Lianban is running at {stack.hub_url}/api/v1")
    click.echo(f"  OpenAPI document: {stack.hub_url}/api/v1/openapi.json")
    click.echo(f"  identity provider sandbox: {stack.peers.idp_url}")
    click.echo(f"  WeChat Pay sandbox: {stack.peers.wechatpay_url}")
    click.echo(f"  Alipay sandbox: {stack.peers.alipay_url}")
    click.echo(f"  utility simulator: {stack.peers.utility_sim_url}")
    click.echo(f"  subscribe-message sandbox: {stack.peers.subscribe_url}")
    click.echo(f"  SMS sandbox (GET /_sandbox/messages): {stack.peers.sms_url}")
    click.echo(f"  partner secrets: {Path(var_dir) / 'hub-partners.json'}")
    click.echo(
        "Demo businesses and their registration status; log in as an owner, "
        "or as a seller for 我出售的房屋:"
    )
    for business_no, status, owners, sellers in buyers:
        click.echo(f"  {business_no}  {status}")
        for owner in owners:
            click.echo(
                f"      owner   {owner.name}  {owner.id_type}  {owner.id_number}"
            )
        for seller in sellers:
            click.echo(
                f"      seller  {seller.name}  {seller.id_type}  {seller.id_number}"
            )
    click.echo("Demo staff (POST /api/v1/auth/login); passwords change at each start:")
    for member in made:
        click.echo(
            f"  {member.role:<10} {member.username:<15} {member.password}  "
            f"{member.organisation}"
        )
    click.echo(f"To start over with fresh demo data, stop and delete {var_dir}.")
    click.echo("docs/manual-use.md walks through a case. Press Ctrl-C to stop.")
    _wait_for_signal()
    stack.stop()


def register_demo_businesses(stack):
    """Register the demo businesses as accepted where the registry has not yet."""
    from demo import scenarios
    from demo.client import HubClient
    from models import Business
    from models.db import database

    client = HubClient(
        stack.hub_url,
        stack.peers.idp_url,
        stack.peers.wechatpay_url,
        stack.registry_secret,
    )
    buyers = []
    for scenario in scenarios.build_scenarios():
        with stack.app.app_context(), database.connection_context():
            known = Business.get_or_none(Business.business_no == scenario.business_no)
        status = known.registration_status if known else "accepted"
        if known is None:
            client.put_business(
                scenario.business_no, scenarios.business_payload(scenario, status)
            )
        owners = [scenario.buyer, *scenario.co_owners]
        # A developer selling a new home is a company and cannot log in.
        sellers = [
            seller for seller in scenario.sellers if seller.id_type == "居民身份证"
        ]
        buyers.append((scenario.business_no, status, owners, sellers))
    return buyers


@main.group()
def registry():
    """Act as the registry system, for manual testing."""


@registry.command("put")
@click.argument("business_no")
@click.argument("body", type=click.File("rb"))
@click.option(
    "--hub",
    default="http://127.0.0.1:5000",
    show_default=True,
    help="Base URL of the running hub.",
)
@click.option(
    "--var-dir",
    default="var",
    show_default=True,
    help="Folder of the running hub; its hub-partners.json has the registry secret.",
)
def registry_put(business_no, body, hub, var_dir):
    """Send BODY (a JSON file, or - for stdin) signed, as the registry does.

    The request is PUT /api/v1/registry/businesses/BUSINESS_NO.
    """
    import json

    import requests

    from partners.signing import sign_request
    from services.registry import BUSINESS_NO_PATTERN

    if not BUSINESS_NO_PATTERN.match(business_no):
        raise click.BadParameter(
            "must be 4 to 64 letters, digits or hyphens", param_hint="BUSINESS_NO"
        )
    secrets_file = Path(var_dir) / "hub-partners.json"
    try:
        secret = json.loads(secrets_file.read_text())["registry"]["secret"]
        if not isinstance(secret, str):
            raise ValueError("registry.secret is not a string")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise click.ClickException(
            f"Cannot read the registry secret from {secrets_file} ({error}); "
            "pass the --var-dir that `lianban serve` was started with."
        ) from None
    raw = body.read()
    path = f"/api/v1/registry/businesses/{business_no}"
    headers = sign_request("registry", secret, "PUT", path, raw)
    headers["Content-Type"] = "application/json"
    try:
        response = requests.put(
            hub.rstrip("/") + path, data=raw, headers=headers, timeout=15
        )
    except requests.RequestException as error:
        raise click.ClickException(
            f"The hub at {hub} did not respond ({type(error).__name__}); "
            "check that `lianban serve` is running and pass its address with --hub."
        ) from None
    click.echo(f"HTTP {response.status_code}")
    click.echo(response.text)
    sys.exit(0 if response.ok else 1)


@registry.command("import-units")
@click.argument("export", type=click.Path(exists=True, dir_okay=False))
def registry_import_units(export):
    """Load the registry's unit export (CSV) for roster linkage.

    EXPORT has the columns 不动产单元代码, 不动产权证号, 坐落, 用途, 建筑面积, 套内面积,
    权利人名称, 权利人证件号码, 原权利人名称 and 原权利人证件号码, several people
    joined by `;`. Units already loaded are replaced by the export's values.
    """
    from linkage.records import RecordsError
    from services import rosters

    with _database():
        try:
            result, new, updated = rosters.import_units(export)
        except RecordsError as error:
            raise click.ClickException(str(error)) from None
    for problem in result.problems:
        click.echo(str(problem), err=True)
    click.echo(
        f"{export}: {new} units added, {updated} replaced, "
        f"{len(result.bad_rows)} rows left out ({result.encoding})"
    )


@registry.command("demo-body")
@click.argument("business_no")
@click.option(
    "--status",
    type=click.Choice(["accepted", "completed", "withdrawn"]),
    default="completed",
    show_default=True,
    help="registration_status to send.",
)
def registry_demo_body(business_no, status):
    """Print the registry's JSON body for a demo business, to pipe into `put`."""
    import json

    from demo import scenarios

    for scenario in scenarios.build_scenarios():
        if scenario.business_no == business_no:
            payload = scenarios.business_payload(scenario, status)
            click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
            return
    known = ", ".join(s.business_no for s in scenarios.build_scenarios())
    raise click.BadParameter(f"not a demo business; known: {known}")


@main.command()
@click.option(
    "--var-dir",
    default=None,
    help="Keep the demo's files here instead of a temporary folder.",
)
@click.option(
    "--quiet", is_flag=True, help="Show the demo's steps only, not the service log."
)
def demo(var_dir, quiet):
    """Drive four demo cases end to end over HTTP and print each timeline."""
    import tempfile

    from demo.run import run_demo

    if quiet:
        logging.getLogger().setLevel(logging.WARNING)
    if var_dir is None:
        with tempfile.TemporaryDirectory(prefix="lianban-demo-") as tmp:
            ok = run_demo(Path(tmp))
    else:
        ok = run_demo(Path(var_dir))
    sys.exit(0 if ok else 1)


@main.group()
def db():
    """Database schema commands."""


@db.command()
def upgrade():
    """Apply the migrations not yet applied to DATABASE_URL."""
    from app import create_app
    from models import migrate
    from models.db import database

    with create_app().app_context(), database.connection_context():
        done = migrate.upgrade()
    click.echo(f"applied {len(done or [])} migrations")


@db.command()
@click.argument("name")
def revision(name):
    """Write a migration for the models' changes since the last one."""
    from app import create_app
    from models import migrate
    from models.db import database

    with create_app().app_context(), database.connection_context():
        migrate.upgrade()
        click.echo(migrate.create_revision(name))


@main.group()
def agreement():
    """Utilities' transfer agreements."""


@agreement.command("publish")
@click.argument("utility_code")
@click.argument("body", type=click.File("r", encoding="utf-8"))
@click.option("--title", required=True, help="Title shown above the agreement.")
def agreement_publish(utility_code, body, title):
    """Publish BODY (a UTF-8 text file) as the utility's next agreement version."""
    import peewee

    from app import create_app
    from models.db import database
    from services import catalog

    app = create_app()
    with app.app_context(), database.connection_context():
        try:
            published = catalog.publish_agreement(utility_code, title, body.read())
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="UTILITY_CODE") from None
        except peewee.OperationalError as error:
            raise click.ClickException(
                f"The database {app.config['DATABASE_URL']} is not ready ({error}); "
                "run `lianban db upgrade` or start `lianban serve` once."
            ) from None
    click.echo(f"published {utility_code} agreement version {published.version}")


@main.group()
def org():
    """Organisations whose staff use the service."""


@org.command("add")
@click.argument(
    "kind",
    type=click.Choice(
        ["agency", "service_desk", "registry_window", "utility", "operator"]
    ),
)
@click.argument("name")
@click.option(
    "--credit-code", help="Unified social credit code; required for an agency."
)
@click.option(
    "--utility",
    "utility_code",
    help="Utility code (such as water); required for a utility.",
)
def org_add(kind, name, credit_code, utility_code):
    """Register an organisation of KIND named NAME."""
    from services import staff

    with _database():
        created = _run(
            lambda: staff.create_organisation(kind, name, credit_code, utility_code)
        )
    click.echo(f"organisation {created.id} {created.kind} {created.name}")


@org.command("list")
def org_list():
    """List the organisations."""
    from models import Organisation

    with _database():
        for item in Organisation.select().order_by(Organisation.id):
            extra = item.credit_code or (item.utility and item.utility.code) or ""
            click.echo(f"{item.id}\t{item.kind}\t{item.name}\t{extra}")


@main.group()
def staff():
    """Staff accounts: create, unlock, reset passwords, deactivate."""


@staff.command("add")
@click.argument("username")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["agent", "service", "window", "utility", "admin", "supervisor"]),
)
@click.option(
    "--org", "organisation", required=True, help="Organisation id or exact name."
)
@click.option("--name", "display_name", required=True, help="The person's name.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input; otherwise a one-time password "
    "is generated, printed once and must be changed at first login.",
)
def staff_add(username, role, organisation, display_name, password_stdin):
    """Create a staff account USERNAME."""
    from services import staff as accounts

    password = (
        click.get_text_stream("stdin").readline().rstrip("\n")
        if password_stdin
        else None
    )
    with _database():
        member, one_time = _run(
            lambda: accounts.create_staff(
                username, role, _organisation(organisation), display_name, password
            )
        )
    click.echo(f"staff {member.id} {member.username} {member.role}")
    if one_time:
        click.echo(
            f"one-time password (shown once; change it at first login): {one_time}"
        )


@staff.command("list")
def staff_list():
    """List staff accounts, without their names."""
    from models import Staff
    from models.base import utcnow

    with _database():
        for member in Staff.select().order_by(Staff.id):
            state = "active" if member.active else "inactive"
            if member.locked_until and member.locked_until > utcnow():
                state = "locked"
            click.echo(
                f"{member.id}\t{member.username}\t{member.role}\t"
                f"{member.organisation.name}\t{state}"
            )


@staff.command("unlock")
@click.argument("username")
def staff_unlock(username):
    """Lift the lockout after repeated wrong passwords."""
    from services import staff as accounts

    with _database():
        accounts.unlock(_staff(username))
    click.echo(f"unlocked {username}")


@staff.command("reset-password")
@click.argument("username")
def staff_reset_password(username):
    """Give USERNAME a one-time password and end their sessions."""
    from services import staff as accounts

    with _database():
        password = accounts.reset_password(_staff(username))
    click.echo(f"one-time password (shown once; change it at first login): {password}")


@staff.command("deactivate")
@click.argument("username")
def staff_deactivate(username):
    """Stop USERNAME from logging in and end their sessions."""
    from services import staff as accounts

    with _database():
        accounts.deactivate(_staff(username))
    click.echo(f"deactivated {username}")


@contextlib.contextmanager
def _database():
    from app import create_app
    from models.db import database

    app = create_app()
    with app.app_context(), database.connection_context():
        try:
            yield app
        except peewee.OperationalError as error:
            raise click.ClickException(
                f"The database {app.config['DATABASE_URL']} is not ready ({error}). "
                "Set LIANBAN_VAR_DIR to the folder `lianban serve` used (or "
                "DATABASE_URL), or run `lianban db upgrade` first."
            ) from None


def _run(action):
    from services.errors import ServiceError

    try:
        return action()
    except ServiceError as error:
        raise click.ClickException(f"{error.code}: {error.message}") from None


def _organisation(text):
    from models import Organisation

    query = Organisation.name == text
    if text.isdigit():
        query |= Organisation.id == int(text)
    found = Organisation.get_or_none(query)
    if found is None:
        raise click.BadParameter(
            f"no organisation {text!r}; see `lianban org list`.", param_hint="--org"
        )
    return found


def _staff(username):
    from models import Staff
    from services.staff import normalise_username

    found = Staff.get_or_none(Staff.username == normalise_username(username))
    if found is None:
        raise click.BadParameter(
            f"no staff account {username!r}.", param_hint="USERNAME"
        )
    return found


@main.group()
def utility():
    """Utilities: register one, or move it between a system link and a channel."""


@utility.command("add")
@click.argument("code")
@click.option(
    "--name", "service_org", required=True, help="服务机构名称, as in rosters."
)
@click.option(
    "--kind",
    required=True,
    type=click.Choice(["water", "power", "gas", "heat", "tv"]),
    help="What the utility supplies.",
)
@click.option(
    "--connection",
    type=click.Choice(["system", "channel"]),
    default="channel",
    show_default=True,
    help="system: pushes over HTTP; channel: the utility collects an export.",
)
@click.option("--base-url", help="The utility system's base URL, for a system link.")
@click.option(
    "--service-days",
    type=int,
    help="Working days to finish a transfer; default LIANBAN_TRANSFER_SERVICE_DAYS.",
)
def utility_add(code, service_org, kind, connection, base_url, service_days):
    """Register utility CODE, or update it, and give it a signing key."""
    from services import catalog, deadlines, partner_keys

    with _database():
        try:
            registered, created = catalog.register_utility(
                code, service_org, kind, connection, base_url
            )
            if service_days is not None:
                deadlines.set_service_days(code, service_days)
        except ValueError as error:
            raise click.UsageError(str(error)) from None
        secret = None
        if created and not partner_keys.active_keys(code):
            _, secret = partner_keys.add_key(code)
    click.echo(
        f"utility {registered.code} {'registered' if created else 'updated'}: "
        f"{registered.service_org}, {registered.kind}, {registered.connection}"
    )
    if secret:
        click.echo(f"signing key (shown once; give it to the utility): {secret}")


@utility.command("set-connection")
@click.argument("code")
@click.argument("connection", type=click.Choice(["system", "channel"]))
@click.option("--base-url", help="The utility system's base URL, for a system link.")
def utility_set_connection(code, connection, base_url):
    """Switch utility CODE to a system link or to another channel."""
    from services import catalog, queue

    with _database() as app:
        try:
            changed, moved = catalog.set_connection(code, connection, base_url)
        except ValueError as error:
            raise click.UsageError(str(error)) from None
        if connection == "system" and moved:
            queue.configure(app)
            queue.send_due()
    click.echo(f"utility {changed.code} now {changed.connection}; {moved} pushes moved")


@utility.command("set-service-days")
@click.argument("code")
@click.argument("days", required=False, type=int)
def utility_set_service_days(code, days):
    """Set utility CODE's service time in working days; omit DAYS for the default."""
    from services import deadlines

    with _database():
        try:
            deadlines.set_service_days(code, days)
        except ValueError as error:
            raise click.UsageError(str(error)) from None
    click.echo(f"utility {code} service days: {days or 'default'}")


@utility.command("list")
def utility_list():
    """List the utilities and how each is connected."""
    from models import Utility

    with _database():
        for item in Utility.select().order_by(Utility.code):
            click.echo(
                f"{item.code}\t{item.kind}\t{item.connection}\t"
                f"{item.base_url or '-'}\t{item.service_days or 'default'}\t"
                f"{item.service_org}"
            )


@main.group("partner-key")
def partner_key():
    """Partners' signing keys: add a new one, retire an old one."""


@partner_key.command("add")
@click.argument("partner")
def partner_key_add(partner):
    """Add a signing key for PARTNER (registry or a utility code)."""
    from models import Utility
    from services import partner_keys

    with _database():
        if partner != "registry" and not Utility.get_or_none(Utility.code == partner):
            raise click.BadParameter(f"no utility {partner!r}.", param_hint="PARTNER")
        key, secret = partner_keys.add_key(partner)
    click.echo(f"key {key.id} for {partner} (shown once): {secret}")
    click.echo("Both keys verify until the old one is retired.")


@partner_key.command("retire")
@click.argument("partner")
@click.argument("key_id", type=int)
def partner_key_retire(partner, key_id):
    """Retire key KEY_ID of PARTNER; requests signed with it are refused."""
    from services import partner_keys

    with _database():
        _run(lambda: partner_keys.retire_key(partner, key_id))
    click.echo(f"key {key_id} of {partner} retired")


@partner_key.command("retire-file-key")
@click.argument("partner")
def partner_key_retire_file(partner):
    """Retire PARTNER's key from PARTNER_SECRETS_FILE, once a stored key replaced it."""
    from services import partner_keys

    with _database() as app:
        configured = app.config["PARTNER_SECRETS"].get(partner, [])
        stored = [k for k in partner_keys.keys_of(partner) if not k.retired_at]
        if not configured:
            raise click.BadParameter(
                f"{partner!r} has no key in the secrets file.", param_hint="PARTNER"
            )
        if not stored:
            raise click.ClickException(
                f"Add a new key first (`lianban partner-key add {partner}`), or "
                f"{partner} would be left without one."
            )
        for secret in configured:
            partner_keys.retire_key(partner, secret=secret)
    click.echo(f"the secrets file's key of {partner} is retired")


@partner_key.command("list")
def partner_key_list():
    """List the stored keys, without their secrets."""
    from services import partner_keys

    with _database():
        for key in partner_keys.keys_of():
            state = "retired" if key.retired_at else "active"
            click.echo(
                f"{key.id}\t{key.partner}\t{state}\t{key.created_at:%Y-%m-%d %H:%M}"
            )


@main.group()
def payments():
    """Payment operations for staff."""


@payments.command("reconcile")
@click.option(
    "--date",
    "bill_date",
    required=True,
    type=click.DateTime(["%Y-%m-%d"]),
    help="The day to reconcile, in China Standard Time (YYYY-MM-DD).",
)
@click.option(
    "--provider",
    type=click.Choice(["wechatpay", "alipay"]),
    multiple=True,
    help="Reconcile only this wallet; repeat for both (the default).",
)
def payments_reconcile(bill_date, provider):
    """List every difference between the wallets' bills for a day and the hub."""
    from app import create_app
    from models.db import database
    from payments.errors import PaymentError
    from services import reconciliation

    app = create_app()
    needed = {
        "wechatpay": ("WECHATPAY_URL", "WECHATPAY_KEYS_DIR"),
        "alipay": ("ALIPAY_URL", "ALIPAY_KEYS_DIR"),
    }
    total = 0
    for name in provider or ("wechatpay", "alipay"):
        missing = [f"LIANBAN_{key}" for key in needed[name] if not app.config[key]]
        if missing:
            raise click.ClickException(f"Set {' and '.join(missing)} to reach {name}.")
        with app.app_context(), database.connection_context():
            try:
                differences = reconciliation.reconcile(name, bill_date.date())
            except PaymentError as error:
                raise click.ClickException(
                    f"Could not fetch the {name} bill: {error}"
                ) from None
        for difference in differences:
            click.echo(
                f"{name}\t{difference.kind}\t{difference.reference}\t"
                f"{difference.detail}"
            )
        total += len(differences)
    click.echo(f"{total} differences for {bill_date:%Y-%m-%d}")


@main.command()
@click.option(
    "--workers",
    default=4,
    show_default=True,
    help="Threads that run queued tasks at once.",
)
def worker(workers):
    """Run the queue's consumer: pushes, payment reports, refunds, polling.

    It runs until SIGINT or SIGTERM, finishing the tasks in hand first.
    """
    from app import create_app
    from services import operations, queue
    from services.worker import QuietConsumer, StorageOutage, storage_error

    app = create_app()
    queue.configure(app)
    where = operations.without_password(
        app.config["QUEUE_URL"] or "the SQLite queue in VAR_DIR"
    )
    error = storage_error(queue.huey, app.config)
    if error is not None:
        raise click.ClickException(
            f"The queue storage {where} does not respond ({error}); "
            "check LIANBAN_QUEUE_URL and that the server runs."
        )
    outage = StorageOutage(where, app.config["QUEUE_OUTAGE_MAX_BACKOFF_SECONDS"])
    consumer = QuietConsumer(
        queue.huey,
        outage,
        workers=workers,
        worker_type="thread",
        max_delay=app.config["QUEUE_MAX_POLL_SECONDS"],
    )
    with app.app_context():
        queue.send_due()
    consumer.run()


def _wait_for_signal():
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


from linkage.cli import link as link_command  # noqa: E402
from services.evidence_cli import evidence_command  # noqa: E402

main.add_command(link_command)
main.add_command(evidence_command)

if __name__ == "__main__":
    main()
