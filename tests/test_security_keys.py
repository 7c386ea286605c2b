"""Security keys (sk-ssh-ed25519, sk-ecdsa-sha2-nistp256): parsing, the signature over
SHA-256(application) || flags || counter || SHA-256(data), and the policy on flags and counters.

The keys are built in software (tests.ssh_helpers.SoftwareSecurityKey); the differential test
(test_identity_differential.py) checks the same signatures against ssh-keygen."""

import base64
import threading

import pytest
from django.db import connection

from tests.ssh_helpers import SK_FLAG_USER_PRESENT, SK_FLAG_USER_VERIFIED, SoftwareSecurityKey, ssh_string
from tokens.models import SecurityKeyCounter
from tokens.security_keys import SecurityKeyRefused, check_flags, counter_acceptable
from tokens.ssh_keys import SecurityKeySignature, SshKeyError, parse_public_key
from tokens.ssh_signatures import SignatureError, verify_sshsig

MESSAGE = b"sk challenge 42"
NAMESPACE = "sk-test@example.com"
KINDS = ["ed25519", "ecdsa"]


@pytest.fixture(params=KINDS)
def sk(request):
    return SoftwareSecurityKey(request.param)


def test_it_parses_a_security_key_and_keeps_its_application(sk):
    key = parse_public_key(sk.line())
    assert (key.key_type, key.application, key.is_security_key) == (sk.key_type, b"ssh:", True)
    assert key.blob == sk.blob


def test_it_refuses_a_security_key_for_an_application_other_than_ssh(sk):
    sk.application = b"https://example.com"
    with pytest.raises(SshKeyError, match="application"):
        parse_public_key(sk.line())


def test_it_refuses_trailing_bytes_in_a_security_key_blob(sk):
    line = f"{sk.key_type} {base64.b64encode(sk.blob + b'x').decode()}"
    with pytest.raises(SshKeyError):
        parse_public_key(line)


def test_it_refuses_a_key_type_that_does_not_match_the_blob():
    ed = SoftwareSecurityKey("ed25519")
    with pytest.raises(SshKeyError, match="does not match"):
        parse_public_key(f"sk-ecdsa-sha2-nistp256@openssh.com {base64.b64encode(ed.blob).decode()}")


@pytest.mark.parametrize("flags", [0x00, 0x01, 0x05, 0x04])
def test_it_verifies_and_reports_the_flags_and_counter_it_signed(sk, flags):
    armored = sk.sign(MESSAGE, NAMESPACE, flags=flags, counter=77)
    report = verify_sshsig(parse_public_key(sk.line()), MESSAGE, armored, NAMESPACE)
    assert report == SecurityKeySignature(flags=flags, counter=77)


def test_a_plain_key_signature_reports_nothing(keys):
    from tests.ssh_helpers import public_key_line, sign

    armored = sign(keys["alice"], MESSAGE, NAMESPACE)
    assert (
        verify_sshsig(parse_public_key(public_key_line(keys["alice"])), MESSAGE, armored, NAMESPACE) is None
    )


@pytest.mark.parametrize(
    "options",
    [
        {"application": b"ssh:other"},
        {"application": b""},
        {"algorithm": "ssh-ed25519"},
        {"algorithm": "webauthn-sk-ecdsa-sha2-nistp256@openssh.com"},
    ],
    ids=["other-application", "empty-application", "plain-algorithm", "webauthn"],
)
def test_it_refuses_a_signature_over_another_application_or_algorithm(sk, options):
    armored = sk.sign(MESSAGE, NAMESPACE, **options)
    with pytest.raises(SignatureError):
        verify_sshsig(parse_public_key(sk.line()), MESSAGE, armored, NAMESPACE)


@pytest.mark.parametrize("position", ["flags", "counter"])
def test_flags_and_counter_are_signed_so_changing_one_breaks_the_signature(sk, position):
    from tests.ssh_helpers import Envelope

    envelope = Envelope.parse(sk.sign(MESSAGE, NAMESPACE, flags=0x01, counter=5))
    signature = bytearray(envelope.signature)
    signature[-5 if position == "flags" else -1] ^= 0x04
    mutated = envelope.replace(signature=bytes(signature)).armored()
    with pytest.raises(SignatureError, match="does not verify"):
        verify_sshsig(parse_public_key(sk.line()), MESSAGE, mutated, NAMESPACE)


def test_it_refuses_a_signature_by_another_security_key(sk):
    other = SoftwareSecurityKey(sk.kind)
    armored = other.sign(MESSAGE, NAMESPACE, embedded=sk.blob)
    with pytest.raises(SignatureError):
        verify_sshsig(parse_public_key(sk.line()), MESSAGE, armored, NAMESPACE)


def test_the_embedded_key_must_carry_the_same_application(sk):
    relabelled = SoftwareSecurityKey(sk.kind, application=b"ssh:other", private=sk.private)
    armored = sk.sign(MESSAGE, NAMESPACE, embedded=relabelled.blob)
    with pytest.raises(SignatureError, match="different key"):
        verify_sshsig(parse_public_key(sk.line()), MESSAGE, armored, NAMESPACE)


def test_trailing_bytes_after_the_counter_are_refused(sk):
    from tests.ssh_helpers import Envelope

    envelope = Envelope.parse(sk.sign(MESSAGE, NAMESPACE))
    mutated = envelope.replace(signature=envelope.signature + b"\0").armored()
    with pytest.raises(SignatureError):
        verify_sshsig(parse_public_key(sk.line()), MESSAGE, mutated, NAMESPACE)


# --- the policy --------------------------------------------------------------------------------


def test_presence_is_required():
    with pytest.raises(SecurityKeyRefused, match="touched"):
        check_flags(SecurityKeySignature(flags=SK_FLAG_USER_VERIFIED, counter=1), require_verification=False)
    check_flags(SecurityKeySignature(flags=SK_FLAG_USER_PRESENT, counter=1), require_verification=False)


def test_verification_is_required_only_when_asked():
    present = SecurityKeySignature(flags=SK_FLAG_USER_PRESENT, counter=1)
    with pytest.raises(SecurityKeyRefused, match="PIN"):
        check_flags(present, require_verification=True)
    both = SecurityKeySignature(flags=SK_FLAG_USER_PRESENT | SK_FLAG_USER_VERIFIED, counter=1)
    check_flags(both, require_verification=True)


@pytest.mark.parametrize(
    "highest, counter, accepted",
    [
        (None, 0, True),
        (None, 9, True),
        (5, 6, True),
        (5, 5, False),
        (5, 4, False),
        (0, 0, True),
        (5, 0, False),
    ],
)
def test_the_counter_rule(highest, counter, accepted):
    assert counter_acceptable(highest, counter) is accepted


def test_the_stored_counter_follows_the_rule(db):
    fingerprint = "SHA256:" + "k" * 43
    assert SecurityKeyCounter.objects.advance(fingerprint, 3)
    assert not SecurityKeyCounter.objects.advance(fingerprint, 3)
    assert not SecurityKeyCounter.objects.advance(fingerprint, 2)
    assert not SecurityKeyCounter.objects.advance(fingerprint, 0)
    assert SecurityKeyCounter.objects.advance(fingerprint, 4)
    assert SecurityKeyCounter.objects.get(fingerprint=fingerprint).highest == 4
    zero = "SHA256:" + "z" * 43
    assert all(SecurityKeyCounter.objects.advance(zero, 0) for _ in range(3))  # an always-0 authenticator


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first_login", [True, False], ids=["first-login", "known-key"])
def test_of_logins_racing_with_the_same_counter_exactly_one_wins(first_login):
    fingerprint = "SHA256:" + "r" * 43
    if not first_login:
        SecurityKeyCounter.objects.advance(fingerprint, 10)
    results, barrier = [], threading.Barrier(8)

    def race():
        try:
            barrier.wait()
            for _ in range(20):  # SQLite may be busy: retry, a real login would be refused with 503
                try:
                    results.append(SecurityKeyCounter.objects.advance(fingerprint, 11))
                    return
                except Exception as exc:  # noqa: BLE001 - "database is locked" on SQLite
                    if "locked" not in str(exc):
                        raise
        finally:
            connection.close()

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


def test_an_sk_blob_with_a_nul_inside_the_application_is_refused():
    sk = SoftwareSecurityKey("ed25519")
    blob = sk.blob[: -len(ssh_string(b"ssh:"))] + ssh_string(b"ssh:\0x")
    with pytest.raises(SshKeyError):
        parse_public_key(f"{sk.key_type} {base64.b64encode(blob).decode()}")
