"""POST token / GET challenge: SSH-key login in-process (the real server is in test_e2e_login)."""

import pytest
from django.contrib.auth.signals import user_logged_in, user_login_failed

from tests.ssh_helpers import fingerprint, make_key, pub_path, public_key_line, sign
from tokens.models import LoginNonce, NativeToken

pytestmark = pytest.mark.django_db


def challenge(client) -> dict:
    response = client.get("/api/native/challenge")
    assert response.status_code == 200
    return response.json()


def body_for(client, key_path, **overrides) -> dict:
    chal = challenge(client)
    body = {
        "public_key": public_key_line(key_path),
        "nonce": chal["nonce"],
        "signature": sign(key_path, chal["nonce"].encode(), chal["namespace"]),
    }
    body.update(overrides)
    return body


def post_token(client, body, **extra):
    return client.post("/api/native/token", body, content_type="application/json", **extra)


def test_the_challenge_is_a_fresh_256_bit_nonce_and_costs_no_query(client, django_assert_num_queries):
    with django_assert_num_queries(0):  # stateless (tokens.challenges): nothing to fill up
        first, second = challenge(client), challenge(client)
    assert first["nonce"] != second["nonce"]
    assert len(first["nonce"]) >= 43 and first["expires_in"] == 60
    assert first["namespace"] == "native-api-login"
    assert not LoginNonce.objects.exists()


def test_a_used_nonce_is_recorded_only_as_a_digest(client, alice, keys):
    body = body_for(client, keys["alice"])
    assert post_token(client, body).status_code == 201
    (stored,) = LoginNonce.objects.values_list("digest", flat=True)
    random_part = body["nonce"].split(".")[0]
    assert len(stored) == 64 and random_part not in stored and random_part[:8] not in stored


def test_alice_logs_in_with_her_ed25519_key_and_gets_a_token_once(client, alice, keys):
    response = post_token(
        client, body_for(client, keys["alice"], device_name="laptop"), HTTP_USER_AGENT="native/1.0"
    )
    assert response.status_code == 201
    data = response.json()
    assert data["token"].startswith("nat_") and data["user"] == {"id": alice.pk, "username": "alice"}
    token = NativeToken.objects.get(public_id=data["token_id"])
    assert token.digest != data["token"] and data["token"] not in token.digest
    assert (token.device_name, token.user_agent, token.created_ip) == ("laptop", "native/1.0", "127.0.0.1")
    assert data["expires_at"].endswith("Z")


@pytest.mark.parametrize("kind", ["ecdsa256", "ecdsa384", "ecdsa521", "rsa2048"])
def test_every_supported_key_type_logs_in(client, alice, key_dir, kind):
    from tokens.login import register_key
    from tokens.ssh_signatures import parse_public_key

    key = make_key(key_dir, kind)
    register_key(alice, parse_public_key(public_key_line(key)))
    assert post_token(client, body_for(client, key)).status_code == 201


def test_a_replayed_nonce_is_refused(client, alice, keys):
    body = body_for(client, keys["alice"])
    assert post_token(client, body).status_code == 201
    replay = post_token(client, body)
    assert replay.status_code == 401 and replay.json()["error"] == "unauthorized"


def test_a_failed_attempt_still_consumes_the_nonce(client, alice, keys):
    body = body_for(client, keys["alice"])
    bad = dict(body, signature=sign(keys["bob"], body["nonce"].encode(), "native-api-login"))
    assert post_token(client, bad).status_code == 401
    assert post_token(client, body).status_code == 401


def test_a_nonce_that_was_never_issued_is_refused(client, alice, keys):
    nonce = "made-up-nonce"
    body = {
        "public_key": public_key_line(keys["alice"]),
        "nonce": nonce,
        "signature": sign(keys["alice"], nonce.encode(), "native-api-login"),
    }
    assert post_token(client, body).status_code == 401


def test_an_expired_nonce_is_refused(client, alice, keys, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from tokens import challenges

    body = body_for(client, keys["alice"])
    later = timezone.now() + timedelta(seconds=60)
    monkeypatch.setattr(challenges, "_now", lambda: later)
    assert post_token(client, body).status_code == 401
    assert not LoginNonce.objects.exists()  # refused before any write


def test_a_signature_by_another_key_is_refused(client, alice, bob, keys):
    body = body_for(client, keys["alice"])
    body["signature"] = sign(keys["bob"], body["nonce"].encode(), "native-api-login")
    assert post_token(client, body).status_code == 401


def test_a_signature_in_the_wrong_namespace_is_refused(client, alice, keys):
    chal = challenge(client)
    body = {
        "public_key": public_key_line(keys["alice"]),
        "nonce": chal["nonce"],
        "signature": sign(keys["alice"], chal["nonce"].encode(), "git"),
    }
    assert post_token(client, body).status_code == 401


def test_a_signature_over_other_bytes_is_refused(client, alice, keys):
    chal = challenge(client)
    body = {
        "public_key": public_key_line(keys["alice"]),
        "nonce": chal["nonce"],
        "signature": sign(keys["alice"], (chal["nonce"] + "\n").encode(), chal["namespace"]),
    }
    assert post_token(client, body).status_code == 401


def test_an_unknown_key_cannot_log_in(client, db, key_dir):
    stranger = make_key(key_dir, "ed25519")
    response = post_token(client, body_for(client, stranger))
    assert response.status_code == 401
    assert NativeToken.objects.count() == 0


def test_an_unknown_key_registers_a_user_when_auto_register_is_on(client, db, key_dir, settings):
    settings.NATIVE_AUTO_REGISTER = True
    stranger = make_key(key_dir, "ed25519")
    response = post_token(client, body_for(client, stranger))
    assert response.status_code == 201
    assert response.json()["user"]["username"].startswith("key-")


def test_a_matching_fingerprint_is_accepted_and_a_mismatch_refused(client, alice, keys):
    good = body_for(client, keys["alice"], public_key_fingerprint=fingerprint(pub_path(keys["alice"])))
    assert post_token(client, good).status_code == 201
    bad = body_for(client, keys["alice"], public_key_fingerprint=fingerprint(pub_path(keys["bob"])))
    assert post_token(client, bad).status_code == 401


def test_a_disabled_user_cannot_log_in(client, alice, keys):
    alice.is_active = False
    alice.save()
    assert post_token(client, body_for(client, keys["alice"])).status_code == 401


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: {k: v for k, v in b.items() if k != "signature"},
        lambda b: {k: v for k, v in b.items() if k != "public_key"},
        lambda b: dict(b, nonce=5),
        lambda b: dict(b, signature=["x"]),
        lambda b: dict(b, device_name="d" * 101),
        lambda b: dict(b, public_key="ssh-ed25519 not-base64!"),
        lambda b: dict(b, public_key="ssh-dss AAAAB3NzaC1kc3MAAACBAP"),
    ],
)
def test_malformed_bodies_get_400_in_the_contract_form(client, alice, keys, mutate):
    response = post_token(client, mutate(body_for(client, keys["alice"])))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request" and response.json()["detail"]


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'"string"', b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_gets_400(client, raw):
    response = client.post("/api/native/token", raw, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "garbage",
        "-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----",
        "-----BEGIN SSH SIGNATURE-----\n" + "A" * 200,
    ],
)
def test_truncated_or_garbage_armour_is_refused_without_a_500(client, alice, keys, signature):
    response = post_token(client, body_for(client, keys["alice"], signature=signature))
    assert response.status_code in (400, 401)


def test_login_sends_djangos_login_signals(client, alice, keys):
    seen = []

    def on_success(sender, user, **kwargs):
        seen.append(("ok", user.username))

    def on_failure(sender, credentials, **kwargs):
        seen.append(("failed", credentials.get("public_key_fingerprint")))

    user_logged_in.connect(on_success)
    user_login_failed.connect(on_failure)
    try:
        post_token(client, body_for(client, keys["alice"]))
        body = body_for(client, keys["alice"])
        post_token(
            client, dict(body, signature=sign(keys["bob"], body["nonce"].encode(), "native-api-login"))
        )
    finally:
        user_logged_in.disconnect(on_success)
        user_login_failed.disconnect(on_failure)
    assert seen == [("ok", "alice"), ("failed", None)]


def test_a_failed_login_is_a_401_with_a_bearer_challenge(client, alice, keys):
    body = body_for(client, keys["alice"])
    assert post_token(client, body).status_code == 201
    replay = post_token(client, body)
    assert replay.status_code == 401 and replay["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"]
)
def test_a_body_not_sent_as_json_is_refused_and_still_burns_its_nonce(client, alice, keys, content_type):
    import json

    body = body_for(client, keys["alice"])
    response = client.post("/api/native/token", json.dumps(body), content_type=content_type)
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request",
        "detail": "The body must be JSON, sent with Content-Type: application/json.",
    }
    assert post_token(client, body).status_code == 401  # the nonce died with the first attempt


def test_a_json_content_type_with_utf8_charset_is_accepted(client, alice, keys):
    import json

    body = json.dumps(body_for(client, keys["alice"]))
    response = client.post("/api/native/token", body, content_type="application/json; charset=UTF-8")
    assert response.status_code == 201


@pytest.mark.parametrize(
    "mutate, detail",
    [
        (
            lambda b: {k: v for k, v in b.items() if k != "signature"},
            "signature is required (a string of 1 to 16384 characters).",
        ),
        (lambda b: dict(b, nonce=5), "nonce must be a non-empty string."),
        (lambda b: dict(b, device_name="d" * 101), "device_name must be a string of at most 100 characters."),
        (
            lambda b: dict(b, public_key_fingerprint=["x"]),
            "public_key_fingerprint must be a string of at most 100 characters.",
        ),
    ],
)
def test_a_bad_field_gets_one_sentence_naming_it(client, alice, keys, mutate, detail):
    response = post_token(client, mutate(body_for(client, keys["alice"])))
    assert response.status_code == 400 and response.json() == {"error": "invalid_request", "detail": detail}


def test_a_400_for_another_field_still_burns_the_nonce(client, alice, keys):
    body = body_for(client, keys["alice"])
    assert post_token(client, dict(body, device_name="d" * 101)).status_code == 400
    assert post_token(client, body).status_code == 401
