"""``add_ssh_ca``, ``remove_ssh_ca``, ``load_krl`` and ``add_ssh_key --verify-required``: what an
operator types, what they are told, and what each refuses (non-zero exit, nothing changed)."""

import io
import subprocess

import pytest
from django.core.management import CommandError, call_command

from tests.ssh_helpers import SoftwareSecurityKey, fingerprint, make_key, pub_path, public_key_line
from tokens.models import CertificateAuthority, RevocationList, SshKey

pytestmark = pytest.mark.django_db


def run(name, *args, **options) -> str:
    out = io.StringIO()
    call_command(name, *args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def test_add_ssh_ca_trusts_a_ca_and_prints_its_fingerprint(tmp_path):
    ca = make_key(tmp_path, "rsa2048")
    output = run("add_ssh_ca", "corp", str(pub_path(ca)), "--principals", "alice,bob")
    assert f"trusted CA 'corp': ssh-rsa {fingerprint(pub_path(ca))}, for users alice,bob" in output
    authority = CertificateAuthority.objects.get(name="corp")
    assert authority.added_by.startswith("manage.py (") and authority.principal_list == ["alice", "bob"]


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda tmp: SoftwareSecurityKey().line(), "security key"),
        (lambda tmp: str(make_key(tmp, "ed25519")), "private key"),
        (lambda tmp: "ssh-ed25519 AAAA", "invalid CA public key"),
    ],
    ids=["security-key", "private-key-file", "garbage"],
)
def test_add_ssh_ca_refuses_keys_that_cannot_be_a_ca(tmp_path, make, error):
    with pytest.raises(CommandError, match=error):
        run("add_ssh_ca", "corp", make(tmp_path))
    assert not CertificateAuthority.objects.exists()


def test_add_ssh_ca_refuses_a_second_name_for_one_key_and_patterns_as_principals(tmp_path):
    ca = make_key(tmp_path, "ed25519")
    run("add_ssh_ca", "corp", public_key_line(ca))
    with pytest.raises(CommandError, match="already trusted as CA 'corp'"):
        run("add_ssh_ca", "corp2", public_key_line(ca))
    with pytest.raises(CommandError, match="patterns"):
        run("add_ssh_ca", "other", public_key_line(make_key(tmp_path, "ed25519")), "--principals", "a*")


def test_remove_ssh_ca_refuses_an_unknown_name():
    with pytest.raises(CommandError, match="no CA named 'nope'"):
        run("remove_ssh_ca", "nope")


def test_remove_ssh_ca_says_how_many_tokens_it_revoked(tmp_path):
    run("add_ssh_ca", "corp", public_key_line(make_key(tmp_path, "ed25519")))
    output = run("remove_ssh_ca", "corp", "--wait", "0")
    assert "removed CA 'corp'" in output and "revoked 0 tokens" in output
    assert not CertificateAuthority.objects.exists()


def test_load_krl_prints_what_it_loaded_and_replaces_the_last(tmp_path, alice, keys):
    spec, krl = tmp_path / "spec", tmp_path / "one.krl"
    spec.write_text(f"{public_key_line(keys['alice'])}\n")
    subprocess.run(
        ["ssh-keygen", "-k", "-z", "3", "-f", str(krl), str(spec)], check=True, capture_output=True
    )
    output = run("load_krl", str(krl), "--wait", "0")
    assert "loaded KRL version 3" in output and "1 keys" in output
    assert "revoked 1 registered key\n" in output and "(alice)" in output
    run("load_krl", str(krl), "--wait", "0")
    assert RevocationList.objects.count() == 1


@pytest.mark.parametrize("content", [b"", b"SSHKRL\n\0garbage", b"x" * 100])
def test_load_krl_refuses_a_file_that_is_not_a_krl_and_keeps_the_one_in_force(tmp_path, content):
    good = tmp_path / "good.krl"
    subprocess.run(["ssh-keygen", "-k", "-f", str(good), "/dev/null"], check=True, capture_output=True)
    run("load_krl", str(good), "--wait", "0")
    bad = tmp_path / "bad.krl"
    bad.write_bytes(content)
    with pytest.raises(CommandError, match="the KRL in force is unchanged"):
        run("load_krl", str(bad))
    assert RevocationList.objects.get().source == str(good.resolve())


def test_load_krl_refuses_a_missing_file(tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        run("load_krl", str(tmp_path / "missing.krl"))


def test_add_ssh_key_verify_required_registers_a_security_key_that_needs_a_pin(alice):
    sk = SoftwareSecurityKey("ecdsa")
    output = run("add_ssh_key", "alice", sk.line(), "--verify-required")
    assert "(user verification required)" in output
    assert SshKey.objects.get(key_type=sk.key_type).verify_required is True


def test_add_ssh_key_verify_required_is_refused_for_a_plain_key(alice, tmp_path):
    with pytest.raises(CommandError, match="security keys"):
        run("add_ssh_key", "alice", public_key_line(make_key(tmp_path, "ed25519")), "--verify-required")
