"""The admin in a real browser (Debian's Chromium, driven by Playwright), as an operator uses it.

Against real daphne processes: once in the documented production mode (DEBUG=false, static
files collected by ``collectstatic`` and served by WhiteNoise), and on the shared test server.
Each test logs in through the login form. .ci/run installs Chromium; Playwright's own browser
download is not used (executable_path points at the system browser).
"""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from django.contrib.auth import get_user_model
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from rooms.models import Membership
from tests.conftest import bearer
from tests.server import ROOT
from tests.test_settings import STRONG_KEY
from tokens.models import NativeToken

# The production configuration (PostgreSQL + Redis: the shared live-socket registry end to end);
# run in the second pass of .ci/run only, to keep CI time down.
pytestmark = [pytest.mark.e2e, pytest.mark.redis]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "operator-password-for-the-browser"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    # Playwright's sync API keeps an event loop in this thread, which makes Django refuse ORM
    # calls (SynchronousOnlyOperation). The test's ORM calls never overlap the browser's.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield from _launch(sync_playwright, profile)
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _launch(sync_playwright, profile):
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True
        )
        yield context
        context.close()


@pytest.fixture
def page(browser):
    browser.clear_cookies()
    tab = browser.new_page()
    tab.set_default_timeout(10_000)
    yield tab
    tab.close()


def with_password(user):
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    # Few iterations: the server checks the hash as stored, and a full-strength hash costs a
    # second of CPU in each process for nothing here.
    user.password = PBKDF2PasswordHasher().encode(PASSWORD, "browsertestsalt", iterations=1000)
    user.save(update_fields=["password"])
    return user


@pytest.fixture
def operator(django_user_model):
    return with_password(django_user_model.objects.create_superuser("operator", "op@example.com"))


def log_in(page, base_url: str, username: str = "operator") -> None:
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")


def header_background(page) -> str:
    return page.eval_on_selector("#header", "element => getComputedStyle(element).backgroundColor")


@pytest.fixture
def production_server(server_factory, tmp_path):
    """daphne with DEBUG=false, after the documented collectstatic into its STATIC_ROOT."""
    static_root = tmp_path / "static"
    env = {
        "DEBUG": "false",
        "SECRET_KEY": STRONG_KEY,
        "ALLOWED_HOSTS": "127.0.0.1",
        "STATIC_ROOT": str(static_root),
        # Plain HTTP on loopback in this test: no redirect, cookies without the Secure flag.
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
    }
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**_clean_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert collected.returncode == 0, collected.stderr
    return server_factory(env=env, name="admin-production")


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}


def test_in_production_mode_the_admin_is_styled_and_revoking_closes_a_live_socket(
    page, production_server, operator, alice
):
    base = production_server.url
    raw = bearer(alice, device_name="kiosk")
    token = NativeToken.objects.get(device_name="kiosk")
    socket = connect(f"{production_server.ws_url}?token={raw}", open_timeout=10)
    try:
        assert json.loads(socket.recv(timeout=10))["type"] == "hello"
        stylesheets = []
        page.on(
            "response", lambda r: stylesheets.append((r.url, r.status)) if r.url.endswith(".css") else None
        )

        log_in(page, base)

        assert header_background(page) not in ("rgba(0, 0, 0, 0)", "transparent")  # base.css applied
        assert stylesheets and all(status == 200 for _, status in stylesheets)
        assert any(
            "/static/admin/css/base." in url and not url.endswith("/base.css") for url, _ in stylesheets
        )

        # The token list shows the live socket, in the row of its token.
        row = f"tr:has(th.field-token_id:has-text('{token.public_id}'))"
        deadline = time.monotonic() + 5
        while True:
            page.goto(f"{base}/admin/tokens/nativetoken/?q=kiosk")
            if page.inner_text(f"{row} td.field-live_sockets").strip() == "1" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert page.inner_text(f"{row} td.field-live_sockets").strip() == "1"

        page.check(f"{row} input[name=_selected_action]")
        page.select_option("select[name=action]", "revoke_selected")
        page.click("button[name=index]")
        assert "1 live socket will be closed (4401)." in page.inner_text("#content")
        page.click('input[value="Yes, I\'m sure"]')
        assert "Revoked 1 token" in page.inner_text("ul.messagelist")

        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=5)
        assert closed.value.rcvd.code == 4401
    finally:
        socket.close()
    token.refresh_from_db()
    assert token.revoked_by == operator


def pick(page, field: str, text: str) -> None:
    """Choose ``text`` in the select2 autocomplete widget of ``field``."""
    page.click(f"#id_{field} + .select2 .select2-selection")
    page.fill(".select2-container--open .select2-search__field", text)
    page.click(f".select2-results__option:has-text('{text}')")


def test_an_operator_adds_and_removes_a_membership_with_the_autocomplete_widgets(
    page, server, operator, general, mallory
):
    log_in(page, server.url)

    page.goto(f"{server.url}/admin/rooms/membership/add/")
    pick(page, "user", "mallory")
    pick(page, "room", "general")
    page.click("input[name=_save]")
    page.wait_for_url(f"{server.url}/admin/rooms/membership/")
    membership = Membership.objects.get(room=general, user=mallory)

    page.goto(f"{server.url}/admin/rooms/membership/?room=general&user=mallory")
    page.check(f"input[name=_selected_action][value='{membership.pk}']")
    page.select_option("select[name=action]", "delete_selected")
    page.click("button[name=index]")
    page.click("input[type=submit]")  # "Yes, I'm sure"
    page.wait_for_selector("ul.messagelist")

    assert not Membership.objects.filter(room=general, user=mallory).exists()
    assert Membership.objects.filter(room=general).count() == 2  # alice and bob stay


def test_an_operator_opens_a_user_and_revokes_all_their_tokens(page, server, operator, alice, bob):
    for device in ("laptop", "phone"):
        bearer(alice, device_name=device)
    bobs = bearer(bob)
    log_in(page, server.url)

    page.goto(f"{server.url}/admin/auth/user/{alice.pk}/change/")
    assert "Active tokens: 2" in page.inner_text("#native-access")
    page.click("input[value='Revoke all tokens']")
    assert "Revoke every credential of 1 user?" in page.inner_text("#content")
    page.click('input[value="Yes, I\'m sure"]')

    assert "Revoked 2 native tokens of 1 user" in page.inner_text("ul.messagelist")
    assert not NativeToken.objects.filter(user=alice, revoked_at=None).exists()
    assert NativeToken.objects.filter(user=bob, revoked_at=None).count() == 1 and bobs


def test_a_room_editor_cannot_add_members_and_a_room_manager_can(page, server_factory, general, mallory):
    """Issue 20: rooms.change_room alone used to add members through the room's page.

    Its own server: saving writes History, and a server that outlived an earlier test's database
    flush would still hold that test's content type ids."""
    from django.contrib.auth.models import Permission

    def staff(username, *codenames):
        user = get_user_model().objects.create_user(username, is_staff=True)
        user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
        return with_password(user)

    staff("editor", "view_room", "change_room")
    staff("manager", "view_room", "change_room", "add_membership", "view_user")
    server = server_factory(name="admin-staff")
    room_page = f"{server.url}/admin/rooms/room/{general.pk}/change/"

    log_in(page, server.url, "editor")
    page.goto(room_page)
    assert page.locator("#id_add_members").count() == 0
    page.fill("#id_name", "Renamed")
    page.click("input[name=_save]")
    page.wait_for_url(f"{server.url}/admin/rooms/room/")

    page.context.clear_cookies()
    log_in(page, server.url, "manager")
    page.goto(room_page)
    pick(page, "add_members", "mallory")
    page.click("input[name=_save]")
    page.wait_for_url(f"{server.url}/admin/rooms/room/")
    assert "Added mallory to general." in page.inner_text("ul.messagelist")

    general.refresh_from_db()
    assert general.name == "Renamed"
    assert Membership.objects.filter(room=general, user=mallory).exists()
