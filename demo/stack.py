"""The hub with its partner peers on loopback, for the demo, manual use and tests."""

import json
import logging
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from werkzeug.serving import make_server

from app import create_app
from demo import scenarios
from models import migrate
from peers.common import QueryFreeRequestHandler
from peers.launch import free_port, start_peers
from peers.sms_sandbox import ensure_sms_keys
from services import catalog, queue

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


@dataclass
class Stack:
    app: object
    hub_url: str
    peers: object
    registry_secret: str
    server: object
    worker: queue.EmbeddedConsumer

    def stop(self):
        queue.stop_embedded(self.worker)
        self.server.shutdown()
        self.peers.stop()
        log.info("stack stopped")


def _hub_secrets(var_dir, keys):
    """Write the hub's partner secrets: each utility's and the registry's."""
    path = var_dir / "hub-partners.json"
    registry_secret = None
    if path.exists():
        registry_secret = json.loads(path.read_text())["registry"]["secret"]
    content = {
        "utilities": {code: {"secret": s} for code, s in keys.utility_secrets.items()},
        "registry": {"secret": registry_secret or secrets.token_hex(32)},
    }
    path.write_text(json.dumps(content, indent=2))
    path.chmod(0o600)
    return path, content["registry"]["secret"]


def start_stack(
    var_dir, port=None, config=None, feedback_delay=0.5, collect_interval=0.0
):
    """Start peers, migrate and seed the database, then serve the hub and its worker."""
    var_dir = Path(var_dir).resolve()
    var_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    hub_url = f"http://{HOST}:{port}"
    demo = scenarios.build_scenarios()

    accounts_file = var_dir / "simulator-accounts.json"
    accounts_file.write_text(
        json.dumps(scenarios.simulator_accounts(demo), ensure_ascii=False, indent=1)
    )
    peers = start_peers(
        var_dir / "peers",
        hub_url,
        accounts_file=accounts_file,
        feedback_delay=feedback_delay,
        collect_interval=collect_interval,
    )
    try:
        secrets_path, registry_secret = _hub_secrets(var_dir, peers.keys)
        app = create_app(
            {
                "VAR_DIR": str(var_dir),
                "PUBLIC_URL": hub_url,
                "IDP_URL": peers.idp_url,
                "IDP_APPID": peers.keys.idp_appid,
                "IDP_SECRET": peers.keys.idp_secret,
                "WECHATPAY_URL": peers.wechatpay_url,
                "WECHATPAY_KEYS_DIR": str(peers.keys.directory),
                "ALIPAY_URL": peers.alipay_url,
                "ALIPAY_KEYS_DIR": str(peers.keys.directory),
                "PARTNER_SECRETS_FILE": str(secrets_path),
                **notice_settings(peers),
                **(config or {}),
            }
        )
        with app.app_context():
            prepare_database(peers, demo)
        # The access log must not carry query strings: a lookup by ID number
        # has the number there.
        server = make_server(
            HOST, port, app, threaded=True, request_handler=QueryFreeRequestHandler
        )
        threading.Thread(target=server.serve_forever, name="hub", daemon=True).start()
        worker = queue.start_embedded(app)
    except BaseException:
        peers.stop()
        raise
    log.info("stack started hub=%s", hub_url)
    return Stack(app, hub_url, peers, registry_secret, server, worker)


def notice_settings(peers):
    """Return the hub's settings for the subscribe-message and SMS sandboxes."""
    sms = ensure_sms_keys(peers.keys.directory)
    return {
        "SUBSCRIBE_URL": peers.subscribe_url,
        "SMS_URL": peers.sms_url,
        "SMS_ACCESS_KEY_ID": sms["access_key_id"],
        "SMS_ACCESS_KEY_SECRET": sms["access_key_secret"],
        "SMS_SIGN_NAME": sms["sign_name"],
    }


def prepare_database(peers, demo):
    from models.db import database

    with database.connection_context():
        migrate.upgrade()
        catalog.ensure_utilities(peers.utility_base_url)
        catalog.ensure_agreements()
        catalog.link_accounts(scenarios.account_links(demo))
