"""The client with certificates and security keys: `login --key K` presents K-cert.pub when it
exists (signed through ssh-agent or with the private key, the certificate embedded either way),
and a security key's touch prompt reaches the user's terminal instead of being swallowed."""

import subprocess
import sys

import pytest

from native_client import signing
from native_client.api import NativeClient
from native_client.errors import SigningError
from tests.server import ROOT
from tests.ssh_helpers import SoftwareSecurityKey, certify, make_key, pub_path, ssh_agent
from tokens.authorities import add_authority


@pytest.fixture
def carol_with_certificate(server, tmp_path, django_user_model):
    """carol has no registered key; her key has a certificate from the trusted CA beside it."""
    django_user_model.objects.create_user(username="carol")
    ca = make_key(tmp_path, "ed25519")
    add_authority("corp", pub_path(ca).read_text())
    (tmp_path / "carol").mkdir()
    return ca


def carol_key(tmp_path, ca, passphrase=""):
    key = make_key(tmp_path / "carol", "ecdsa256", passphrase=passphrase)
    certify(ca, pub_path(key), principals=["carol"], validity="-1m:+1h")
    return key


def test_the_cli_logs_in_with_the_certificate_beside_the_key(server, tmp_path, carol_with_certificate):
    key = carol_key(tmp_path, carol_with_certificate)
    env = {"NATIVE_CLIENT_CONFIG_DIR": str(tmp_path / "config"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "native_client", "login", "--server", server.url, "--key", str(key)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "as carol" in result.stdout


def test_through_ssh_agent_a_passphrase_protected_key_with_a_certificate_logs_in(
    server, tmp_path, monkeypatch, carol_with_certificate
):
    key = carol_key(tmp_path, carol_with_certificate, passphrase="correct horse")
    askpass = tmp_path / "askpass.sh"  # were the key file used, ssh-keygen would ask this, which refuses
    askpass.write_text("#!/bin/sh\nexit 1\n")
    askpass.chmod(0o700)
    monkeypatch.setenv("SSH_ASKPASS", str(askpass))
    monkeypatch.setenv("SSH_ASKPASS_REQUIRE", "force")
    with ssh_agent(key, passphrase="correct horse") as agent_env:  # ssh-add loads the certificate too
        monkeypatch.setenv("SSH_AUTH_SOCK", agent_env["SSH_AUTH_SOCK"])
        with NativeClient(server.url) as client:
            issued = client.login(pub_path(key))
            assert issued["user"]["username"] == "carol"
            assert client.me()["user"]["username"] == "carol"


def test_the_login_presents_the_certificate_and_names_it_by_either_file(tmp_path):
    ca = make_key(tmp_path, "ed25519")
    (tmp_path / "k").mkdir()
    key = make_key(tmp_path / "k", "ed25519")
    assert signing.public_key_line(key).startswith("ssh-ed25519 ")
    cert = certify(ca, pub_path(key), principals=["x"])
    for name in (key, pub_path(key), cert):
        assert signing.public_key_line(name).startswith("ssh-ed25519-cert-v01@openssh.com ")
        assert signing.certificate_file(name) == cert


def test_ssh_keygen_s_stderr_reaches_the_terminal_for_a_security_key(capfd):
    script = "printf 'Confirm user presence for key SK SHA256:x\\n' >&2; printf signed"
    output = signing._run(["sh", "-c", script], timeout=10, show_stderr=True)
    assert output == b"signed"
    assert "Confirm user presence" in capfd.readouterr().err
    with pytest.raises(SigningError, match="device not found"):
        signing._run(["sh", "-c", "echo 'device not found' >&2; exit 1"], timeout=10, show_stderr=True)


def test_a_security_key_is_signed_with_its_prompt_shown(tmp_path, monkeypatch):
    sk = SoftwareSecurityKey("ed25519")
    private = tmp_path / "id_ed25519_sk"
    private.write_text("a private key handle file\n")
    sk.write_pub(tmp_path, "id_ed25519_sk")
    seen = {}

    def fake_run(args, **options):
        seen.update(options)
        return b"-----BEGIN SSH SIGNATURE-----\n-----END SSH SIGNATURE-----\n"

    monkeypatch.setattr(signing, "_run", fake_run)
    signing.sign(b"nonce", "ns", private, env={})
    assert seen["show_stderr"] is True
    signing.sign(
        b"nonce",
        "ns",
        make_key(tmp_path / "plain" if (tmp_path / "plain").mkdir() is None else tmp_path, "ed25519"),
        env={},
    )
    assert seen["show_stderr"] is False
