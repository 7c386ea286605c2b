"""tokens.ssh_certificates on certificates made by the real `ssh-keygen -s`: what is parsed,
which CA signatures verify, and the login rules (user certificate, validity window by the
server's clock, principals, critical options, source-address)."""

import base64
import time

import pytest

from tests.ssh_helpers import SoftwareSecurityKey, certify, make_key, pub_path
from tokens.ssh_certificates import (
    FOREVER,
    HOST_CERTIFICATE,
    USER_CERTIFICATE,
    CertificateError,
    CertificateRefused,
    check_certificate,
    parse_certificate,
)
from tokens.ssh_keys import parse_public_key


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    return {
        "dir": directory,
        "ca": make_key(directory, "ed25519"),
        "user": make_key(directory, "ecdsa256"),
    }


def issue(pki, name="cert", **options):
    subject = pki["dir"] / f"{name}.pub"
    subject.write_text(pub_path(pki["user"]).read_text())
    return parse_certificate(certify(pki["ca"], subject, **options).read_text())


def test_it_reads_what_ssh_keygen_signed(pki):
    cert = issue(pki, identity="alice@corp", principals=["alice", "ops"], serial=4242, validity="-1h:+1h")
    assert cert.kind == USER_CERTIFICATE
    assert (cert.key_id, cert.principals, cert.serial) == ("alice@corp", ("alice", "ops"), 4242)
    assert cert.key.blob == parse_public_key(pub_path(pki["user"]).read_text()).blob
    assert cert.authority.blob == parse_public_key(pub_path(pki["ca"]).read_text()).blob
    assert cert.valid_before - cert.valid_after == 2 * 3600
    # ssh-keygen -s adds the usual extensions; they are kept and ignored
    assert "permit-pty" in dict(cert.extensions)
    assert cert.fingerprint == cert.key.fingerprint


def test_a_certificate_without_validity_never_expires(pki):
    cert = issue(pki, principals=["alice"])
    assert (cert.valid_after, cert.valid_before) == (0, FOREVER)


def test_any_change_to_the_signed_part_breaks_the_ca_signature(pki):
    cert = issue(pki, principals=["alice"], serial=1)
    tail = len(cert.blob) - 150  # inside the signed body, before the CA key and signature
    for position in (40, tail):
        mutated = bytearray(cert.blob)
        mutated[position] ^= 0x01
        with pytest.raises(CertificateError):
            parse_certificate(f"{cert.key_type} {base64.b64encode(bytes(mutated)).decode()}")


def test_it_refuses_trailing_bytes_and_a_mismatched_type(pki):
    cert = issue(pki, principals=["alice"])
    with pytest.raises(CertificateError):
        parse_certificate(f"{cert.key_type} {base64.b64encode(cert.blob + b'x').decode()}")
    with pytest.raises(CertificateError, match="does not match"):
        parse_certificate(f"ssh-ed25519-cert-v01@openssh.com {base64.b64encode(cert.blob).decode()}")


def test_a_security_key_can_be_certified(pki):
    sk = SoftwareSecurityKey("ecdsa")
    cert = parse_certificate(
        certify(pki["ca"], sk.write_pub(pki["dir"], "sk"), principals=["alice"]).read_text()
    )
    assert cert.key.is_security_key and cert.key.application == b"ssh:"


def test_an_sha1_rsa_ca_signature_is_refused(tmp_path, pki):
    ca = make_key(tmp_path, "rsa2048")
    subject = tmp_path / "s.pub"
    subject.write_text(pub_path(pki["user"]).read_text())
    sha512 = parse_certificate(certify(ca, subject, principals=["a"]).read_text())
    assert sha512.authority.key_type == "ssh-rsa"
    with pytest.raises(CertificateError, match="CA signature"):
        parse_certificate(certify(ca, subject, principals=["a"], signature_algorithm="ssh-rsa").read_text())


# --- may it log in -------------------------------------------------------------------------------


def admission(cert, ip="203.0.113.9", now=None):
    return check_certificate(cert, now=int(time.time()) if now is None else now, client_ip=ip)


def test_a_user_certificate_valid_now_is_admitted(pki):
    cert = issue(pki, principals=["alice"], validity="-5m:+5m")
    assert admission(cert).requires_user_verification is False


def test_the_validity_window_is_valid_after_inclusive_valid_before_exclusive(pki):
    cert = issue(pki, principals=["alice"], validity="-5m:+5m")
    admission(cert, now=cert.valid_after)
    with pytest.raises(CertificateRefused, match="not valid yet"):
        admission(cert, now=cert.valid_after - 1)
    with pytest.raises(CertificateRefused, match="expired"):
        admission(cert, now=cert.valid_before)


def test_a_host_certificate_is_refused(pki):
    cert = issue(pki, principals=["alice"], host=True)
    assert cert.kind == HOST_CERTIFICATE
    with pytest.raises(CertificateRefused, match="not a user certificate"):
        admission(cert)


def test_a_certificate_without_principals_is_refused(pki):
    with pytest.raises(CertificateRefused, match="no principal"):
        admission(issue(pki))


@pytest.mark.parametrize(
    "option", ["force-command=/bin/true", "critical:no-such-option=1", "critical:permit-pty"]
)
def test_a_critical_option_we_do_not_enforce_is_refused(pki, option):
    cert = issue(pki, principals=["alice"], options=[option])
    with pytest.raises(CertificateRefused, match="critical option"):
        admission(cert)


def test_verify_required_asks_for_user_verification(pki):
    assert admission(issue(pki, principals=["alice"], options=["verify-required"])).requires_user_verification


@pytest.mark.parametrize(
    "sources, ip, admitted",
    [
        ("203.0.113.0/24", "203.0.113.9", True),
        ("203.0.113.0/24", "198.51.100.1", False),
        ("10.0.0.1,203.0.113.9", "203.0.113.9", True),
        ("2001:db8::/32", "2001:db8::7", True),
        ("2001:db8::/32", "203.0.113.9", False),
        ("203.0.113.0/24", None, False),
    ],
)
def test_source_address_is_checked_against_the_client_address(pki, sources, ip, admitted):
    cert = issue(pki, principals=["alice"], options=[f"source-address={sources}"])
    if admitted:
        admission(cert, ip=ip)
    else:
        with pytest.raises(CertificateRefused, match="source-address"):
            admission(cert, ip=ip)
