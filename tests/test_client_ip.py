"""The client-IP rule: the peer, unless it is a trusted proxy; then the rightmost untrusted
X-Forwarded-For hop. Nobody outside NATIVE_TRUSTED_PROXIES can choose their own address."""

import ipaddress

import pytest
from django.test import RequestFactory

from native_api import client_ip
from native_api.client_ip import rate_key, resolve

PROXIES = "10.0.0.0/8,2001:db8:ffff::/48"


@pytest.fixture
def trusted(settings):
    settings.NATIVE_TRUSTED_PROXIES = [ipaddress.ip_network(n) for n in PROXIES.split(",")]


# --- untrusted peers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("203.0.113.9:51234", "203.0.113.9"),
        ("2001:db8::7", "2001:db8::7"),
        ("[2001:db8::7]:443", "2001:db8::7"),
        ("[2001:db8::7]", "2001:db8::7"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        ("[::ffff:203.0.113.9]:80", "203.0.113.9"),
        ("fe80::1%eth0", "fe80::1"),
        (" 203.0.113.9 ", "203.0.113.9"),
    ],
)
def test_the_peer_address_is_normalised(peer, expected):
    assert resolve(peer, None) == expected


@pytest.mark.parametrize("peer", [None, "", "unknown", "localhost", "[2001:db8::1", "300.1.1.1", "1.2.3"])
def test_a_missing_or_garbage_peer_has_no_address(peer):
    assert resolve(peer, "198.51.100.1") is None


def test_an_untrusted_peer_cannot_choose_its_address_with_x_forwarded_for(trusted):
    assert resolve("203.0.113.9", "198.51.100.1") == "203.0.113.9"
    assert resolve("203.0.113.9", "10.0.0.1, 198.51.100.1") == "203.0.113.9"


def test_without_trusted_proxies_even_a_private_peer_is_the_client(settings):
    settings.NATIVE_TRUSTED_PROXIES = []
    assert resolve("10.0.0.5", "198.51.100.1") == "10.0.0.5"


# --- trusted proxies ------------------------------------------------------------------------------


def test_behind_a_trusted_proxy_the_forwarded_client_counts(trusted):
    assert resolve("10.0.0.5", "198.51.100.1") == "198.51.100.1"


def test_no_x_forwarded_for_leaves_the_proxy_as_the_client(trusted):
    assert resolve("10.0.0.5", None) == "10.0.0.5"
    assert resolve("10.0.0.5", "") == "10.0.0.5"


def test_the_rightmost_untrusted_hop_wins_over_what_the_client_wrote(trusted):
    # The client sent "X-Forwarded-For: 192.0.2.66"; our proxy appended the real peer.
    assert resolve("10.0.0.5", "192.0.2.66, 198.51.100.1") == "198.51.100.1"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right(trusted):
    assert resolve("10.0.0.5", "192.0.2.66, 198.51.100.1, 10.1.2.3, 10.9.9.9") == "198.51.100.1"
    assert resolve("2001:db8:ffff::1", "198.51.100.1, [2001:db8:ffff::2]:80") == "198.51.100.1"


def test_an_all_trusted_chain_ends_at_the_leftmost_proxy(trusted):
    assert resolve("10.0.0.5", "10.1.1.1, 10.2.2.2") == "10.1.1.1"


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("unknown", "10.0.0.5"),
        ("198.51.100.1, unknown", "10.0.0.5"),
        ("198.51.100.1, , 10.1.1.1", "10.1.1.1"),
        ("198.51.100.1, _hidden, 10.1.1.1", "10.1.1.1"),
    ],
)
def test_a_garbage_hop_stops_the_walk_at_the_last_trusted_address(trusted, forwarded, expected):
    """Left of the garbage is the client's own writing: never let it pick the bucket."""
    assert resolve("10.0.0.5", forwarded) == expected


def test_hops_may_carry_ports_brackets_and_ipv4_mapped_forms(trusted):
    assert resolve("10.0.0.5", "198.51.100.1:4711") == "198.51.100.1"
    assert resolve("10.0.0.5", "[2001:db8::9]:4711") == "2001:db8::9"
    assert resolve("10.0.0.5", "::ffff:198.51.100.1") == "198.51.100.1"
    assert resolve("::ffff:10.0.0.5", "198.51.100.1") == "198.51.100.1"


def test_repeated_x_forwarded_for_headers_are_read_in_order(trusted):
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5")
    # What Django's ASGI handler makes of two X-Forwarded-For header lines.
    request.META["HTTP_X_FORWARDED_FOR"] = "192.0.2.66,198.51.100.1, 10.1.1.1"
    assert client_ip.from_request(request) == "198.51.100.1"
    scope = {
        "client": ["10.0.0.5", 50000],
        "headers": [(b"x-forwarded-for", b"192.0.2.66"), (b"x-forwarded-for", b"198.51.100.1, 10.1.1.1")],
    }
    assert client_ip.from_scope(scope) == "198.51.100.1"


def test_http_and_websocket_apply_the_same_rule(trusted):
    request = RequestFactory().get("/", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="198.51.100.1")
    scope = {"client": ("203.0.113.9", 1234), "headers": [(b"x-forwarded-for", b"198.51.100.1")]}
    assert client_ip.from_request(request) == client_ip.from_scope(scope) == "203.0.113.9"
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="198.51.100.1")
    scope = {"client": ("10.0.0.5", 1234), "headers": [(b"x-forwarded-for", b"198.51.100.1")]}
    assert client_ip.from_request(request) == client_ip.from_scope(scope) == "198.51.100.1"


def test_a_scope_without_a_client_has_no_address():
    assert client_ip.from_scope({"headers": [(b"x-forwarded-for", b"198.51.100.1")]}) is None
    assert client_ip.from_scope({"client": None, "headers": []}) is None


# --- buckets ------------------------------------------------------------------------------------


def test_an_ipv4_address_is_its_own_bucket():
    assert rate_key("203.0.113.9") == "203.0.113.9"


def test_ipv6_addresses_of_one_slash_64_share_a_bucket():
    assert rate_key("2001:db8:1:2::1") == rate_key("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert rate_key("2001:db8:1:3::1") != rate_key("2001:db8:1:2::1")


def test_no_address_falls_in_one_shared_bucket():
    assert rate_key(None) == rate_key("garbage") == "unknown"
