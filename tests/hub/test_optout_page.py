"""The SMS opt-out page at /u/<token>, served for any path and changing nothing."""

import re
from urllib.parse import urljoin

import pytest
import requests

from models import SmsSetting
from services.notice_choices import opt_out_token

ASSET = re.compile(r'(?:src|href)="(/static/[^"]+)"')
# A module imports by absolute path or by a path relative to its own.
IMPORT = re.compile(r'^import .* from "([^"]+)";$', re.MULTILINE)
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css"}


def assert_page(response):
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Robots-Tag"] == "noindex"


def test_page_leaves_opt_out_unchanged(stack, app, homes):
    token = opt_out_token(homes.person().phone)

    for path in (f"/u/{token}", f"/u/{token}/", f"/u/{token.upper()}"):
        page = requests.get(stack.hub_url + path, timeout=10)
        assert_page(page)
        assert 'src="/static/optout/optout.js"' in page.text
        head = requests.head(stack.hub_url + path, timeout=10)
        assert head.status_code == 200

    setting = SmsSetting.get(SmsSetting.opt_out_token == token)
    assert setting.opted_in is None
    assert setting.decided_by is None


@pytest.mark.parametrize(
    "path",
    [
        "/u/",
        "/u/not-a-token",
        "/u/" + "g" * 24,
        "/u/0123456789abcdef01234567/extra",
        "/u/%E0%A4%A",
        "/u/%3Cscript%3E",
    ],
)
def test_page_served_for_malformed_path(stack, path):
    assert_page(requests.get(stack.hub_url + path, timeout=10))


def test_page_assets_served(stack):
    page = requests.get(f"{stack.hub_url}/u/{'0' * 24}", timeout=10).text
    assets = set(ASSET.findall(page))
    seen = set()

    while assets - seen:
        path = sorted(assets - seen)[0]
        seen.add(path)
        response = requests.get(stack.hub_url + path, timeout=10)
        assert response.status_code == 200, path
        suffix = path[path.rindex(".") :]
        assert response.headers["Content-Type"].startswith(CONTENT_TYPES[suffix])
        if suffix == ".js":
            imported = IMPORT.findall(response.text)
            assets.update(urljoin(path, module) for module in imported)

    assert seen == {
        "/static/optout/optout.css",
        "/static/optout/optout.js",
        "/static/shared/api.js",
        "/static/shared/base.css",
        "/static/shared/dom.js",
        "/static/shared/errors.js",
    }
