"""POST token with a security key or a certificate (API.md, Identity), in-process.

The cast: alice has a software-built ed25519-sk key registered; carol has no key at all, but
holds certificates from the "corp" CA the operator trusts. A certificate must be a user
certificate, valid by the server's clock, naming carol (an active user) as principal, with no
critical option we do not enforce; its token expires with it. The KRL refuses what it revokes.
"""

import base64
from datetime import UTC, datetime, timedelta

import pytest

from tests.ssh_helpers import (
    SK_FLAG_USER_PRESENT,
    SK_FLAG_USER_VERIFIED,
    SoftwareSecurityKey,
    certify,
    make_key,
    pub_path,
    public_key_line,
    sign,
)
from tokens.authorities import add_authority
from tokens.krl_store import load as load_krl
from tokens.login import register_key
from tokens.models import CertificateAuthority, NativeToken, SshCertificate
from tokens.revocation import remove_authority
from tokens.ssh_keys import parse_public_key

pytestmark = pytest.mark.django_db
NAMESPACE = "native-api-login"


def challenge(client) -> str:
    return client.get("/api/native/challenge").json()["nonce"]


def post_token(client, public_key: str, signature_for, **extra):
    nonce = challenge(client)
    body = {"public_key": public_key, "nonce": nonce, "signature": signature_for(nonce.encode())}
    return client.post("/api/native/token", body, content_type="application/json", **extra)


def refused(response, words: str) -> bool:
    body = response.json()
    return response.status_code == 401 and body["error"] == "unauthorized" and words in body["detail"]


# --- security keys ---------------------------------------------------------------------------------


@pytest.fixture
def sk_alice(django_user_model):
    alice = django_user_model.objects.create_user(username="alice")
    key = SoftwareSecurityKey("ed25519")
    register_key(alice, parse_public_key(key.line()))
    return key


def sk_login(client, key, **options):
    return post_token(client, key.line(), lambda nonce: key.sign(nonce, NAMESPACE, **options))


def test_alice_logs_in_with_her_ed25519_sk_key(client, sk_alice):
    response = sk_login(client, sk_alice, counter=1)
    assert response.status_code == 201 and response.json()["user"]["username"] == "alice"
    token = NativeToken.objects.get(public_id=response.json()["token_id"])
    assert token.ssh_key_fingerprint == parse_public_key(sk_alice.line()).fingerprint
    assert token.certificate is None


def test_an_ecdsa_sk_key_logs_in_too(client, django_user_model):
    key = SoftwareSecurityKey("ecdsa")
    register_key(django_user_model.objects.create_user(username="dave"), parse_public_key(key.line()))
    assert sk_login(client, key, counter=3).status_code == 201


def test_without_a_touch_the_login_is_refused(client, sk_alice):
    assert refused(sk_login(client, sk_alice, counter=1, flags=0), "not touched")
    assert refused(sk_login(client, sk_alice, counter=2, flags=SK_FLAG_USER_VERIFIED), "not touched")


def test_a_counter_that_went_back_or_repeats_is_refused(client, sk_alice):
    assert sk_login(client, sk_alice, counter=10).status_code == 201
    assert refused(sk_login(client, sk_alice, counter=9), "counter")
    assert refused(sk_login(client, sk_alice, counter=10), "counter")
    assert sk_login(client, sk_alice, counter=11).status_code == 201


def test_an_authenticator_that_always_reports_zero_keeps_working(client, sk_alice):
    assert sk_login(client, sk_alice, counter=0).status_code == 201
    assert sk_login(client, sk_alice, counter=0).status_code == 201


def test_a_refused_signature_does_not_move_the_counter(client, sk_alice):
    assert refused(sk_login(client, sk_alice, counter=20, flags=0), "not touched")
    assert sk_login(client, sk_alice, counter=5).status_code == 201


def test_a_key_registered_verify_required_needs_user_verification(client, django_user_model):
    key = SoftwareSecurityKey("ecdsa")
    erin = django_user_model.objects.create_user(username="erin")
    register_key(erin, parse_public_key(key.line()), verify_required=True)
    assert refused(sk_login(client, key, counter=1), "PIN")
    assert (
        sk_login(client, key, counter=2, flags=SK_FLAG_USER_PRESENT | SK_FLAG_USER_VERIFIED).status_code
        == 201
    )


# --- certificates ------------------------------------------------------------------------------------


@pytest.fixture
def pki(tmp_path, django_user_model):
    """The corp CA (trusted), carol's key (not registered) and a way to certify it."""
    django_user_model.objects.create_user(username="carol")
    ca = make_key(tmp_path, "ed25519", comment="corp-ca")
    carol = make_key(tmp_path / "carol" if (tmp_path / "carol").mkdir() is None else tmp_path, "ecdsa256")
    add_authority("corp", public_key_line(ca))

    def issue(**options):
        options.setdefault("principals", ["carol"])
        options.setdefault("validity", "-5m:+1h")
        for old in carol.parent.glob("*-cert.pub"):
            old.unlink()
        return certify(ca, pub_path(carol), **options)

    return {"ca": ca, "carol": carol, "issue": issue, "dir": tmp_path}


def cert_login(client, cert_path, **extra):
    return post_token(
        client, cert_path.read_text().strip(), lambda nonce: sign(cert_path, nonce, NAMESPACE), **extra
    )


def test_carol_logs_in_with_a_certificate_and_no_registered_key(client, pki):
    cert = pki["issue"](serial=31, identity="carol@corp")
    response = cert_login(client, cert)
    assert response.status_code == 201, response.json()
    assert response.json()["user"]["username"] == "carol"
    token = NativeToken.objects.select_related("certificate").get(public_id=response.json()["token_id"])
    assert token.ssh_key is None
    assert (token.certificate.serial, token.certificate.key_id) == ("31", "carol@corp")
    assert token.certificate.authority.name == "corp"


def test_the_token_expires_with_the_certificate(client, pki):
    response = cert_login(client, pki["issue"](validity="-5m:+10m"))
    token = NativeToken.objects.get(public_id=response.json()["token_id"])
    valid_before = token.certificate.valid_before
    assert token.expires_at == valid_before
    assert valid_before - datetime.now(UTC) < timedelta(minutes=11)
    assert response.json()["expires_at"].startswith(valid_before.strftime("%Y-%m-%dT%H:%M:%S"))


def test_a_certificate_longer_than_the_token_ttl_gets_the_usual_expiry(client, pki, settings):
    settings.NATIVE_TOKEN_TTL = 600
    response = cert_login(client, pki["issue"](validity="-5m:+30d"))
    token = NativeToken.objects.get(public_id=response.json()["token_id"])
    assert token.expires_at - token.created_at == timedelta(seconds=600)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"validity": "-2h:-1h"}, "expired"),
        ({"validity": "+1h:+2h"}, "not valid yet"),
        ({"principals": ["mallory"]}, "no active user"),
        ({"host": True}, "not a user certificate"),
        ({"options": ["critical:x-custom=1"]}, "critical option"),
        ({"options": ["source-address=10.9.0.0/16"]}, "source-address"),
    ],
    ids=[
        "expired",
        "not-yet-valid",
        "wrong-principal",
        "host",
        "unknown-critical-option",
        "source-address-out",
    ],
)
def test_each_failure_is_a_401_that_names_the_reason(client, pki, options, words):
    assert refused(cert_login(client, pki["issue"](**options)), words)


def test_source_address_in_range_logs_in(client, pki):
    assert cert_login(client, pki["issue"](options=["source-address=127.0.0.0/8"])).status_code == 201


def test_source_address_uses_the_client_address_behind_trusted_proxies(client, pki, settings):
    import ipaddress

    settings.NATIVE_TRUSTED_PROXIES = [ipaddress.ip_network("127.0.0.0/8")]
    cert = pki["issue"](options=["source-address=198.51.100.0/24"])
    assert cert_login(client, cert, HTTP_X_FORWARDED_FOR="198.51.100.7").status_code == 201
    assert refused(cert_login(client, cert, HTTP_X_FORWARDED_FOR="203.0.113.5"), "source-address")


def test_an_inactive_user_named_by_the_principal_is_refused(client, pki, django_user_model):
    django_user_model.objects.filter(username="carol").update(is_active=False)
    assert refused(cert_login(client, pki["issue"]()), "no active user")


def test_a_certificate_whose_principals_name_two_users_is_refused(client, pki, django_user_model):
    django_user_model.objects.create_user(username="ops")
    assert refused(cert_login(client, pki["issue"](principals=["carol", "ops"])), "more than one user")


def test_a_ca_restricted_to_other_users_is_refused(client, pki):
    CertificateAuthority.objects.filter(name="corp").update(principals="dave")
    assert refused(cert_login(client, pki["issue"]()), "not trusted for")


def test_a_certificate_from_an_untrusted_ca_is_refused(client, pki, tmp_path):
    other_ca = make_key(tmp_path, "ed25519")
    cert = certify(other_ca, pub_path(pki["carol"]), principals=["carol"])
    assert refused(cert_login(client, cert), "CA is not trusted")


def test_a_forged_certificate_is_a_400(client, pki):
    cert = pki["issue"]()
    key_type, text = cert.read_text().split()[:2]
    blob = bytearray(base64.b64decode(text))
    blob[-10] ^= 1  # inside the CA signature
    forged = f"{key_type} {base64.b64encode(bytes(blob)).decode()}"
    response = post_token(client, forged, lambda nonce: sign(cert, nonce, NAMESPACE))
    assert response.status_code == 400 and "CA signature" in response.json()["detail"]


def test_removing_the_ca_revokes_the_tokens_issued_through_it(client, pki):
    token_id = cert_login(client, pki["issue"]()).json()["token_id"]
    remove_authority(CertificateAuthority.objects.get(name="corp"))
    assert NativeToken.objects.get(public_id=token_id).revoked_at is not None
    assert refused(cert_login(client, pki["issue"]()), "CA is not trusted")


def test_a_security_key_certificate_needs_a_touch_and_honours_verify_required(client, pki):
    key = SoftwareSecurityKey("ed25519")
    cert = certify(
        pki["ca"], key.write_pub(pki["dir"], "carol-sk"), principals=["carol"], options=["verify-required"]
    )
    line, blob = cert.read_text().strip(), base64.b64decode(cert.read_text().split()[1])

    def login(**options):
        return post_token(client, line, lambda nonce: key.sign(nonce, NAMESPACE, embedded=blob, **options))

    assert refused(login(counter=1, flags=SK_FLAG_USER_PRESENT), "PIN")
    assert refused(login(counter=2, flags=SK_FLAG_USER_VERIFIED), "not touched")
    assert login(counter=3, flags=SK_FLAG_USER_PRESENT | SK_FLAG_USER_VERIFIED).status_code == 201
    assert refused(login(counter=3, flags=SK_FLAG_USER_PRESENT | SK_FLAG_USER_VERIFIED), "counter")


# --- the KRL -------------------------------------------------------------------------------------------


def krl_for(pki, *lines: str, ca: bool = True) -> bytes:
    import subprocess

    spec, output = pki["dir"] / "spec", pki["dir"] / "revoked.krl"
    spec.write_text("".join(f"{line}\n" for line in lines))
    output.unlink(missing_ok=True)
    args = ["ssh-keygen", "-k", "-f", str(output)] + (["-s", str(pub_path(pki["ca"]))] if ca else [])
    subprocess.run([*args, str(spec)], check=True, capture_output=True)
    return output.read_bytes()


def test_a_krl_with_the_serial_refuses_the_login_and_revokes_its_tokens(client, pki):
    cert = pki["issue"](serial=500)
    token_id = cert_login(client, cert).json()["token_id"]
    other = cert_login(client, pki["issue"](serial=501)).json()["token_id"]
    result = load_krl(krl_for(pki, "serial: 500"), source="test")
    assert result.tokens_revoked == 1 and len(result.certificates) == 1
    assert NativeToken.objects.get(public_id=token_id).revoked_at is not None
    assert NativeToken.objects.get(public_id=other).revoked_at is None
    assert refused(cert_login(client, pki["issue"](serial=500)), "revoked")


def test_a_krl_naming_a_plain_key_by_hash_refuses_it_and_revokes_its_tokens(client, alice, keys, pki):
    line = public_key_line(keys["alice"])
    token_id = post_token(client, line, lambda nonce: sign(keys["alice"], nonce, NAMESPACE)).json()[
        "token_id"
    ]
    result = load_krl(krl_for(pki, f"sha1: {line}", ca=False))
    assert result.tokens_revoked == 1 and result.keys and "alice" in result.keys[0]
    assert NativeToken.objects.get(public_id=token_id).revoked_at is not None
    assert refused(post_token(client, line, lambda nonce: sign(keys["alice"], nonce, NAMESPACE)), "revoked")


def test_loading_a_new_krl_replaces_the_last_one(client, pki):
    load_krl(krl_for(pki, "serial: 600"))
    assert refused(cert_login(client, pki["issue"](serial=600)), "revoked")
    load_krl(krl_for(pki, "serial: 601"))
    assert cert_login(client, pki["issue"](serial=600)).status_code == 201


def test_a_krl_revoking_the_ca_key_refuses_its_certificates(client, pki):
    load_krl(krl_for(pki, f"key: {public_key_line(pki['ca'])}", ca=False))
    assert refused(cert_login(client, pki["issue"]()), "CA key is revoked")
    assert SshCertificate.objects.count() == 0
