"""``manage.py add_ssh_key``: how an operator gives someone a key to log in with."""

import io

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from tests.ssh_helpers import fingerprint, make_key, pub_path, public_key_line, sign
from tokens.login import LoginRequest, consume_nonce, exchange, issue_challenge
from tokens.models import SshKey
from tokens.ssh_signatures import parse_public_key

pytestmark = pytest.mark.django_db


def run(*args, **options) -> str:
    out = io.StringIO()
    call_command("add_ssh_key", *args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


@pytest.fixture
def new_key(tmp_path):
    """A fresh ed25519 key nobody has registered yet."""
    return make_key(tmp_path, "ed25519", comment="carol@desk")


def log_in_with(key_path):
    nonce = issue_challenge()
    assert consume_nonce(nonce)
    signature = sign(key_path, nonce.encode(), settings.NATIVE_SIGNATURE_NAMESPACE)
    key = parse_public_key(public_key_line(key_path))
    return exchange(LoginRequest(public_key=key, nonce=nonce, signature=signature))


def test_it_adds_a_key_line_and_prints_the_fingerprint_ssh_keygen_shows(alice, new_key):
    out = run("alice", public_key_line(new_key))

    expected = fingerprint(pub_path(new_key))
    assert out == f"added ssh-ed25519 key {expected} for user 'alice'\n"
    key = SshKey.objects.get(fingerprint=expected)
    assert key.user == alice and key.key_type == "ssh-ed25519"
    assert key.name == "carol@desk"  # the comment, when no --name is given
    assert key.public_key == " ".join(public_key_line(new_key).split()[:2])


def test_the_added_key_can_log_in(alice, new_key):
    run("alice", public_key_line(new_key))

    issued = log_in_with(new_key)

    assert issued.token.user == alice and issued.raw.startswith("nat_")


def test_it_reads_the_key_from_a_pub_file(alice, new_key):
    out = run("alice", str(pub_path(new_key)), name="work laptop")

    key = SshKey.objects.get(user=alice, fingerprint=fingerprint(pub_path(new_key)))
    assert key.name == "work laptop"
    assert key.fingerprint in out


def test_it_reads_the_key_from_stdin_when_given_a_dash(alice, new_key):
    run("alice", "-", stdin=io.StringIO(public_key_line(new_key) + "\n"))

    assert SshKey.objects.filter(user=alice, fingerprint=fingerprint(pub_path(new_key))).exists()


@pytest.mark.parametrize("kind", ["ecdsa384", "ecdsa521", "rsa2048"])
def test_it_accepts_every_key_type_of_the_contract(alice, tmp_path, kind):
    key = make_key(tmp_path, kind)

    run("alice", public_key_line(key))

    assert SshKey.objects.filter(user=alice, fingerprint=fingerprint(pub_path(key))).exists()


def test_it_refuses_an_unknown_user_without_create_user(db, new_key):
    with pytest.raises(CommandError, match="no user named 'carol'"):
        run("carol", public_key_line(new_key))

    assert not SshKey.objects.exists()
    assert not get_user_model().objects.filter(username="carol").exists()


def test_create_user_makes_a_key_only_user_who_can_log_in(db, new_key):
    out = run("carol", public_key_line(new_key), create_user=True)

    carol = get_user_model().objects.get(username="carol")
    assert not carol.has_usable_password()
    assert "for new user 'carol'" in out
    assert log_in_with(new_key).token.user == carol


def test_create_user_reuses_an_existing_user(alice, new_key):
    out = run("alice", public_key_line(new_key), create_user=True)

    assert "for user 'alice'" in out
    assert get_user_model().objects.filter(username="alice").count() == 1


def test_create_user_refuses_a_username_django_would_not_accept(db, new_key):
    with pytest.raises(CommandError, match="cannot create user 'no spaces please'"):
        run("no spaces please", public_key_line(new_key), create_user=True)

    assert not get_user_model().objects.exists()


def test_it_refuses_an_invalid_key_with_the_parsers_reason(alice):
    with pytest.raises(CommandError, match="invalid public key: key data is not valid base64"):
        run("alice", "ssh-ed25519 not-base64!! x")

    assert not SshKey.objects.filter(user=alice).exclude(name="alice's key").exists()


def test_an_invalid_key_with_create_user_creates_no_user(db):
    with pytest.raises(CommandError, match="unsupported key type"):
        run("carol", "ssh-dss AAAAB3NzaC1kc3M= carol", create_user=True)

    assert not get_user_model().objects.filter(username="carol").exists()


def test_it_refuses_rsa_keys_under_2048_bits(alice, tmp_path):
    small = make_key(tmp_path, "rsa1024")

    with pytest.raises(CommandError, match="RSA keys must be at least 2048 bits"):
        run("alice", str(pub_path(small)))


def test_it_refuses_a_key_registered_already_and_says_to_whom(alice, bob, keys):
    alices_key = public_key_line(keys["alice"])

    with pytest.raises(CommandError, match=r"already registered to user 'alice'"):
        run("bob", alices_key)

    assert SshKey.objects.get(fingerprint=fingerprint(pub_path(keys["alice"]))).user == alice


def test_it_refuses_a_pub_path_that_does_not_exist(alice, tmp_path):
    with pytest.raises(CommandError, match="neither a public key line nor a readable file"):
        run("alice", str(tmp_path / "missing.pub"))


def test_it_refuses_a_directory(alice, tmp_path):
    with pytest.raises(CommandError, match="neither a public key line nor a readable file"):
        run("alice", str(tmp_path) + "/")


def test_it_refuses_a_private_key_file_without_echoing_it(alice, new_key):
    with pytest.raises(CommandError) as caught:
        run("alice", str(new_key))

    assert "holds a private key; pass the public key (.pub)" in str(caught.value)
    assert "BEGIN" not in str(caught.value)
    assert not SshKey.objects.filter(user=alice).exclude(name="alice's key").exists()


def test_it_refuses_a_huge_file(alice, tmp_path):
    huge = tmp_path / "huge.pub"
    huge.write_text("ssh-ed25519 " + "A" * 20_000)

    with pytest.raises(CommandError, match="too large to be a public key"):
        run("alice", str(huge))
