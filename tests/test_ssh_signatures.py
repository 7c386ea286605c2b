"""Tests for tokens.ssh_signatures against keys and signatures made by the real OpenSSH tools."""

from __future__ import annotations

import base64
import contextlib
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ssh_helpers import (
    Envelope,
    armor,
    dearmor,
    fingerprint,
    make_key,
    message_with_a_leading_zero_rsa_signature,
    pub_path,
    public_key_line,
    read_strings,
    sign,
    sign_with_agent,
    sign_with_cryptography,
    ssh_agent,
    ssh_string,
)
from tokens.ssh_signatures import (
    MAX_ARMORED_LENGTH,
    PublicKey,
    SignatureError,
    SshKeyError,
    parse_public_key,
    verify_sshsig,
)

MESSAGE = b"login challenge 7f3a9c\n"
NAMESPACE = "tokens-test@example.com"
SIGNING_KINDS = ["ed25519", "ecdsa256", "ecdsa384", "ecdsa521", "rsa2048"]
KEY_TYPES = {
    "ed25519": ("ssh-ed25519", 256),
    "ecdsa256": ("ecdsa-sha2-nistp256", 256),
    "ecdsa384": ("ecdsa-sha2-nistp384", 384),
    "ecdsa521": ("ecdsa-sha2-nistp521", 521),
    "rsa2048": ("ssh-rsa", 2048),
}


# --- SSHSIG envelopes, for building hostile inputs -------------------------------------------


def envelope_fields(armored: str) -> Envelope:
    return Envelope.parse(armored)


def with_fields(armored: str, **changes) -> str:
    return Envelope.parse(armored).replace(**changes).armored()


def key_line(key_type: str, blob: bytes, comment: str = "") -> str:
    return f"{key_type} {base64.b64encode(blob).decode()} {comment}".strip()


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("ssh-keys")
    made = {kind: make_key(directory, kind) for kind in [*SIGNING_KINDS, "rsa1024"]}
    made["other-ed25519"] = make_key(directory, "ed25519")
    made["other-rsa2048"] = make_key(directory, "rsa2048")
    return made


@pytest.fixture(scope="session")
def signatures(keys) -> dict[str, str]:
    return {kind: sign(keys[kind], MESSAGE, NAMESPACE) for kind in SIGNING_KINDS}


def public(keys, kind: str) -> PublicKey:
    return parse_public_key(public_key_line(keys[kind]))


def assert_rejected(keys, kind: str, armored: str, message: bytes = MESSAGE) -> SignatureError:
    with pytest.raises(SignatureError) as excinfo:
        verify_sshsig(public(keys, kind), message, armored, NAMESPACE)
    return excinfo.value


# --- parsing public keys ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", SIGNING_KINDS)
def test_it_parses_a_public_key_from_ssh_keygen(keys, kind):
    line = public_key_line(keys[kind])
    key = parse_public_key(line)
    assert (key.key_type, key.bits) == KEY_TYPES[kind]
    assert key.comment == f"{kind}@tests"
    assert key.openssh == " ".join(line.split()[:2])
    assert key.blob == base64.b64decode(line.split()[1])


@pytest.mark.parametrize("kind", SIGNING_KINDS)
def test_its_fingerprint_equals_what_ssh_keygen_prints(keys, kind):
    assert public(keys, kind).fingerprint == fingerprint(pub_path(keys[kind]))


def test_it_strips_surrounding_whitespace_and_keeps_a_comment_with_spaces(keys):
    line = " ".join(public_key_line(keys["ed25519"]).split()[:2])
    key = parse_public_key(f"  \n{line}  my laptop key \n")
    assert key.comment == "my laptop key"
    assert key.openssh == line


def test_the_same_key_with_different_comments_has_the_same_blob_and_fingerprint(keys):
    line = " ".join(public_key_line(keys["ed25519"]).split()[:2])
    first, second = parse_public_key(line + " one"), parse_public_key(line + " two")
    assert (first.blob, first.fingerprint) == (second.blob, second.fingerprint)


def test_it_rejects_a_1024_bit_rsa_key(keys):
    with pytest.raises(SshKeyError, match="2048"):
        parse_public_key(public_key_line(keys["rsa1024"]))


@pytest.mark.parametrize(
    "key_type",
    [
        "ssh-dss",
        "ssh-foo",
        "ssh-ed25519-cert-v01@openssh.com",
    ],
)
def test_it_rejects_unsupported_key_types(key_type):
    blob = ssh_string(key_type.encode()) + ssh_string(bytes(32)) + ssh_string(b"ssh:")
    with pytest.raises(SshKeyError, match="unsupported key type"):
        parse_public_key(key_line(key_type, blob))


def test_it_rejects_a_real_openssh_certificate(keys, tmp_path):
    subject = tmp_path / "subject.pub"
    shutil.copy(pub_path(keys["ed25519"]), subject)
    subprocess.run(
        ["ssh-keygen", "-q", "-s", str(keys["other-ed25519"]), "-I", "id", str(subject)],
        check=True,
        capture_output=True,
    )
    with pytest.raises(SshKeyError, match="unsupported key type"):
        parse_public_key((tmp_path / "subject-cert.pub").read_text())


@pytest.mark.parametrize("outer, inner", [("ssh-rsa", "ed25519"), ("ecdsa-sha2-nistp256", "ecdsa384")])
def test_it_rejects_a_key_line_whose_type_differs_from_the_blob_type(keys, outer, inner):
    with pytest.raises(SshKeyError, match="does not match"):
        parse_public_key(key_line(outer, public(keys, inner).blob))


def test_it_rejects_trailing_garbage_inside_the_blob(keys):
    with pytest.raises(SshKeyError):
        parse_public_key(key_line("ssh-ed25519", public(keys, "ed25519").blob + b"\x00"))


def test_it_rejects_an_ecdsa_point_that_is_not_on_the_curve(keys):
    blob = bytearray(public(keys, "ecdsa256").blob)
    blob[-1] ^= 0x01  # changes y, so the point no longer satisfies the curve equation
    with pytest.raises(SshKeyError, match="invalid"):
        parse_public_key(key_line("ecdsa-sha2-nistp256", bytes(blob)))


def test_it_rejects_a_non_canonical_rsa_blob_so_one_key_has_one_fingerprint(keys):
    key_type, e, n = read_strings(public(keys, "rsa2048").blob)
    padded = ssh_string(key_type) + ssh_string(b"\x00" + e) + ssh_string(n)  # same key value
    with pytest.raises(SshKeyError, match="canonical"):
        parse_public_key(key_line("ssh-rsa", padded))


@pytest.mark.parametrize("point", [b"", b"\x02" + bytes(32)], ids=["empty", "compressed"])
def test_it_rejects_an_empty_or_compressed_ecdsa_point(point):
    blob = ssh_string(b"ecdsa-sha2-nistp256") + ssh_string(b"nistp256") + ssh_string(point)
    with pytest.raises(SshKeyError, match="invalid"):
        parse_public_key(key_line("ecdsa-sha2-nistp256", blob))


def test_it_rejects_an_ed25519_key_of_the_wrong_length():
    blob = ssh_string(b"ssh-ed25519") + ssh_string(bytes(31))
    with pytest.raises(SshKeyError):
        parse_public_key(key_line("ssh-ed25519", blob))


@pytest.mark.parametrize(
    "text",
    ["", "   ", "ssh-ed25519", "ssh-ed25519 not*base64!", "ssh-ed25519 AAAA", "ssh-ed25519 AAAAC3"],
)
def test_it_rejects_malformed_key_lines(text):
    with pytest.raises(SshKeyError):
        parse_public_key(text)


def test_it_rejects_more_than_one_key_line(keys):
    two_lines = public_key_line(keys["ed25519"]) + "\n" + public_key_line(keys["ecdsa256"])
    with pytest.raises(SshKeyError, match="single"):
        parse_public_key(two_lines)


@pytest.mark.parametrize("options", ["no-pty", 'command="echo hi",no-agent-forwarding'])
def test_it_rejects_an_authorized_keys_options_prefix(keys, options):
    with pytest.raises(SshKeyError, match="options"):
        parse_public_key(f"{options} {public_key_line(keys['ed25519'])}")


# --- verifying signatures that should verify --------------------------------------------------


@pytest.mark.parametrize("kind", SIGNING_KINDS)
def test_it_verifies_a_signature_from_ssh_keygen(keys, signatures, kind):
    verify_sshsig(public(keys, kind), MESSAGE, signatures[kind], NAMESPACE)


@pytest.mark.parametrize("kind", SIGNING_KINDS)
def test_it_verifies_a_signature_with_a_sha256_message_hash(keys, kind):
    armored = sign(keys[kind], MESSAGE, NAMESPACE, hashalg="sha256")
    assert envelope_fields(armored).hash_alg == b"sha256"
    verify_sshsig(public(keys, kind), MESSAGE, armored, NAMESPACE)


def test_ssh_keygen_signs_rsa_with_rsa_sha2_512(signatures):
    assert read_strings(envelope_fields(signatures["rsa2048"]).signature)[0] == b"rsa-sha2-512"


def test_it_verifies_a_signature_made_through_a_real_ssh_agent(keys, tmp_path):
    # Only the .pub files are copied, so ssh-keygen can only have signed through the agent.
    with ssh_agent(*(keys[kind] for kind in SIGNING_KINDS)) as env:
        for kind in SIGNING_KINDS:
            public_only = tmp_path / f"{kind}.pub"
            shutil.copy(pub_path(keys[kind]), public_only)
            armored = sign_with_agent(public_only, MESSAGE, NAMESPACE, env)
            verify_sshsig(public(keys, kind), MESSAGE, armored, NAMESPACE)


def test_it_verifies_an_rsa_sha2_256_signature(keys):
    # ssh-keygen always picks rsa-sha2-512, so this one is built with cryptography.
    armored = sign_with_cryptography(keys["rsa2048"], MESSAGE, NAMESPACE, sig_alg="rsa-sha2-256")
    verify_sshsig(public(keys, "rsa2048"), MESSAGE, armored, NAMESPACE)


def test_ssh_keygen_accepts_the_rsa_sha2_256_signature_these_tests_build(keys, tmp_path):
    signature_file = tmp_path / "message.sig"
    signature_file.write_text(
        sign_with_cryptography(keys["rsa2048"], MESSAGE, NAMESPACE, sig_alg="rsa-sha2-256")
    )
    result = subprocess.run(
        ["ssh-keygen", "-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(signature_file)],
        input=MESSAGE,
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr


# --- agreeing with `ssh-keygen -Y verify` (docs/security.md, "SSHSIG: agreement with OpenSSH") ---
# tests/test_sshsig_differential.py runs ssh-keygen itself on these and many more variants.

BEGIN, END = "-----BEGIN SSH SIGNATURE-----", "-----END SSH SIGNATURE-----"


def body_of(armored: str) -> str:
    return "".join(armored.strip().splitlines()[1:-1])


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa256", "rsa2048"])
def test_it_refuses_a_signature_made_over_a_non_empty_reserved_field_as_openssh_does(keys, kind):
    # OpenSSH always verifies against an empty reserved field, so such a signature never verifies.
    armored = sign_with_cryptography(keys[kind], MESSAGE, NAMESPACE, reserved=b"future")
    assert "does not verify" in str(assert_rejected(keys, kind, armored))


@pytest.mark.parametrize("reserved", [b"x", b"\0", b"r" * 300], ids=["x", "nul", "300-bytes"])
def test_it_ignores_what_the_reserved_field_holds_as_openssh_does(keys, signatures, reserved):
    armored = with_fields(signatures["ed25519"], reserved=reserved)
    verify_sshsig(public(keys, "ed25519"), MESSAGE, armored, NAMESPACE)


def test_it_accepts_an_rsa_signature_sent_without_its_leading_zero_byte(keys):
    # RFC 8332 lets a signer drop leading zeros; OpenSSH left-pads to the modulus length.
    message = message_with_a_leading_zero_rsa_signature(keys["rsa2048"], NAMESPACE)
    armored = sign(keys["rsa2048"], message, NAMESPACE)
    algorithm, value = read_strings(envelope_fields(armored).signature)
    assert value[0] == 0 and len(value) == 256
    short = with_fields(armored, signature=ssh_string(algorithm) + ssh_string(value[1:]))
    verify_sshsig(public(keys, "rsa2048"), message, short, NAMESPACE)


def test_it_refuses_an_rsa_signature_longer_than_the_modulus_as_openssh_does(keys, signatures):
    algorithm, value = read_strings(envelope_fields(signatures["rsa2048"]).signature)
    armored = with_fields(signatures["rsa2048"], signature=ssh_string(algorithm) + ssh_string(b"\0" + value))
    assert "longer than the modulus" in str(assert_rejected(keys, "rsa2048", armored))


def with_key_type(blob: bytes, key_type: bytes) -> bytes:
    return ssh_string(key_type) + blob[4 + int.from_bytes(blob[:4], "big") :]


@pytest.mark.parametrize("field", ["namespace", "hash_alg", "signature algorithm", "key type"])
@pytest.mark.parametrize("kind", ["ed25519", "ecdsa256", "rsa2048"])
def test_it_accepts_a_text_field_ending_in_one_nul_as_openssh_does(keys, signatures, kind, field):
    # sshbuf_get_cstring() allows a NUL as the last byte and drops it.
    fields = envelope_fields(signatures[kind])
    algorithm, value = read_strings(fields.signature)
    changes = {
        "namespace": {"namespace": fields.namespace + b"\0"},
        "hash_alg": {"hash_alg": fields.hash_alg + b"\0"},
        "signature algorithm": {"signature": ssh_string(algorithm + b"\0") + ssh_string(value)},
        "key type": {"publickey": with_key_type(fields.publickey, read_strings(fields.publickey)[0] + b"\0")},
    }[field]
    verify_sshsig(public(keys, kind), MESSAGE, with_fields(signatures[kind], **changes), NAMESPACE)


@pytest.mark.parametrize(
    "changes",
    [
        {"namespace": NAMESPACE.encode() + b"\0\0"},
        {"namespace": b"\0" + NAMESPACE.encode()},
        {"hash_alg": b"sha5\x0012"},
    ],
    ids=["namespace-two-nuls", "namespace-leading-nul", "hash-embedded-nul"],
)
def test_it_refuses_a_text_field_with_a_nul_before_its_last_byte(keys, signatures, changes):
    assert_rejected(keys, "ed25519", with_fields(signatures["ed25519"], **changes))


def test_it_accepts_version_0_as_openssh_does(keys, signatures):
    # sshsig_parse_preamble() refuses only versions above 1; the version is not signed.
    verify_sshsig(public(keys, "ed25519"), MESSAGE, with_fields(signatures["ed25519"], version=0), NAMESPACE)


def test_it_compares_the_embedded_rsa_key_by_value_as_openssh_does(keys, signatures):
    key_type, e, n = read_strings(public(keys, "rsa2048").blob)
    padded = ssh_string(key_type) + ssh_string(b"\0" + e) + ssh_string(b"\0" + n)  # same numbers
    armored = with_fields(signatures["rsa2048"], publickey=padded)
    verify_sshsig(public(keys, "rsa2048"), MESSAGE, armored, NAMESPACE)


@pytest.mark.parametrize(
    "name, verifies", [(b"rsa-sha2-512", True), (b"rsa-sha2-256", True), (b"RSA", False)]
)
def test_it_takes_the_key_type_names_current_openssh_takes_for_an_embedded_rsa_key(
    keys, signatures, name, verifies
):
    # sshkey_type_from_name() maps the RSA signature algorithm names to RSA keys too; short
    # names ("RSA") are refused on the wire since OpenSSH 9.9.
    blob = public(keys, "rsa2048").blob
    renamed = ssh_string(name) + blob[4 + len(b"ssh-rsa") :]
    armored = with_fields(signatures["rsa2048"], publickey=renamed)
    if verifies:
        verify_sshsig(public(keys, "rsa2048"), MESSAGE, armored, NAMESPACE)
    else:
        assert "different key" in str(assert_rejected(keys, "rsa2048", armored))


def test_it_compares_the_embedded_ecdsa_key_by_value_as_openssh_does(keys, signatures):
    key_type, curve, point = read_strings(public(keys, "ecdsa256").blob)
    renamed = ssh_string(key_type) + ssh_string(curve + b"\0") + ssh_string(point)
    verify_sshsig(
        public(keys, "ecdsa256"), MESSAGE, with_fields(signatures["ecdsa256"], publickey=renamed), NAMESPACE
    )


@pytest.mark.parametrize("length, verifies", [(2049, True), (2050, False)])
def test_it_allows_leading_zeros_in_an_ecdsa_integer_up_to_openssh_s_limit(
    keys, signatures, length, verifies
):
    algorithm, value = read_strings(envelope_fields(signatures["ecdsa256"]).signature)
    r, s = read_strings(value)
    padded = ssh_string(r.rjust(length, b"\0")) + ssh_string(s)
    armored = with_fields(signatures["ecdsa256"], signature=ssh_string(algorithm) + ssh_string(padded))
    if verifies:
        verify_sshsig(public(keys, "ecdsa256"), MESSAGE, armored, NAMESPACE)
    else:
        assert "too large" in str(assert_rejected(keys, "ecdsa256", armored))


def test_it_refuses_an_ed25519_signature_with_a_non_canonical_s(keys, signatures):
    # RFC 8032 requires S below the group order. OpenSSH 10.3 and later verify Ed25519 with
    # libcrypto and refuse it too; older OpenSSH reduced S instead (docs/security.md).
    order = 2**252 + 27742317777372353535851937790883648493
    algorithm, value = read_strings(envelope_fields(signatures["ed25519"]).signature)
    s = int.from_bytes(value[32:], "little") + order
    armored = with_fields(
        signatures["ed25519"],
        signature=ssh_string(algorithm) + ssh_string(value[:32] + s.to_bytes(32, "little")),
    )
    assert "does not verify" in str(assert_rejected(keys, "ed25519", armored))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda a: a + "trailing text, even non-ASCII é\n",
        lambda a: a.rstrip("\n") + "glued to the footer\n",
        lambda a: a.rstrip("\n"),
        lambda a: a.replace("\n", "\r\n"),
        lambda a: f"{BEGIN}\n{body_of(a)}\0\n{END}\n",
        lambda a: f"{BEGIN}\n" + " \t\v\f".join(body_of(a)) + f"\n\n{END}\n",
        lambda a: a + a,
    ],
    ids=[
        "text-after",
        "text-glued-after",
        "no-final-newline",
        "crlf",
        "nul-ending-the-body",
        "whitespace",
        "twice",
    ],
)
def test_it_reads_the_armour_as_ssh_keygen_does(keys, signatures, mangle):
    verify_sshsig(public(keys, "ed25519"), MESSAGE, mangle(signatures["ed25519"]), NAMESPACE)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda a: "\n" + a,
        lambda a: " " + a,
        lambda a: a.replace("\n", "\r"),
        lambda a: f"{BEGIN}{body_of(a)}\n{END}\n",
        lambda a: f"{BEGIN} \n{body_of(a)}\n{END}\n",
        lambda a: f"{BEGIN}\n{body_of(a)}{END}\n",
        lambda a: f"{BEGIN}\n{body_of(a)[:10]}\0{body_of(a)[10:]}\n{END}\n",
        lambda a: f"{BEGIN}\n{body_of(a)[:10]}={body_of(a)[10:]}\n{END}\n",
    ],
    ids=[
        "leading-newline",
        "leading-space",
        "cr-only",
        "header-glued-to-the-body",
        "space-after-the-header",
        "footer-glued-to-the-body",
        "nul-in-the-body",
        "padding-in-the-middle",
    ],
)
def test_it_refuses_armour_ssh_keygen_refuses(keys, signatures, mangle):
    assert_rejected(keys, "ed25519", mangle(signatures["ed25519"]))


def test_it_refuses_base64_whose_unused_bits_are_not_zero_as_openssh_does(keys, signatures):
    # b64_pton() refuses them; Python's decoder would silently drop them.
    # The ignored reserved field sets the length so that the base64 ends in a single "=".
    fields = envelope_fields(signatures["ed25519"])
    raw = next(r for r in (fields.replace(reserved=b"p" * n).raw() for n in range(3)) if len(r) % 3 == 2)
    body = base64.b64encode(raw).decode()
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    stray = body[:-2] + alphabet[alphabet.index(body[-2]) + 1] + "="
    assert base64.b64decode(stray) == raw
    armored = f"{BEGIN}\n{stray}\n{END}\n"
    assert "base64" in str(assert_rejected(keys, "ed25519", armored))
    verify_sshsig(public(keys, "ed25519"), MESSAGE, f"{BEGIN}\n{body}\n{END}\n", NAMESPACE)


# --- verifying signatures that should not -----------------------------------------------------


@pytest.mark.parametrize("kind", SIGNING_KINDS)
def test_it_rejects_a_signature_for_another_namespace(keys, signatures, kind):
    with pytest.raises(SignatureError, match="namespace"):
        verify_sshsig(public(keys, kind), MESSAGE, signatures[kind], "other-namespace")


@pytest.mark.parametrize("namespace", [NAMESPACE.upper(), NAMESPACE + " ", NAMESPACE[:-1]])
def test_it_compares_the_namespace_exactly(keys, signatures, namespace):
    with pytest.raises(SignatureError, match="namespace"):
        verify_sshsig(public(keys, "ed25519"), MESSAGE, signatures["ed25519"], namespace)


def test_it_refuses_an_empty_namespace_even_for_a_signature_over_an_empty_namespace(keys):
    armored = sign_with_cryptography(keys["ed25519"], MESSAGE, "")
    with pytest.raises(SignatureError, match="namespace"):
        verify_sshsig(public(keys, "ed25519"), MESSAGE, armored, "")


@pytest.mark.parametrize("kind", SIGNING_KINDS)
def test_it_rejects_a_signature_over_a_message_with_one_byte_changed(keys, signatures, kind):
    changed = MESSAGE[:-2] + bytes([MESSAGE[-2] ^ 0x01]) + MESSAGE[-1:]
    assert_rejected(keys, kind, signatures[kind], message=changed)


@pytest.mark.parametrize("kind", SIGNING_KINDS)
def test_it_rejects_a_flipped_bit_in_the_signature_bytes(keys, signatures, kind):
    signature = bytearray(envelope_fields(signatures[kind]).signature)
    signature[-1] ^= 0x01
    error = assert_rejected(keys, kind, with_fields(signatures[kind], signature=bytes(signature)))
    assert "does not verify" in str(error)


@pytest.mark.parametrize("kind", SIGNING_KINDS)
def test_it_rejects_another_keys_signature(keys, signatures, kind):
    other = "other-ed25519" if kind != "ed25519" else "ecdsa256"
    armored = signatures.get(other) or sign(keys[other], MESSAGE, NAMESPACE)
    assert "different key" in str(assert_rejected(keys, kind, armored))


@pytest.mark.parametrize("signer, claimed", [("ed25519", "other-ed25519"), ("rsa2048", "other-rsa2048")])
def test_it_rejects_a_signature_by_one_key_relabelled_with_another_key(keys, signatures, signer, claimed):
    armored = with_fields(signatures[signer], publickey=public(keys, claimed).blob)
    assert "does not verify" in str(assert_rejected(keys, claimed, armored))


def test_it_rejects_an_ecdsa_signature_relabelled_as_an_ed25519_key(keys, signatures):
    armored = with_fields(signatures["ecdsa256"], publickey=public(keys, "ed25519").blob)
    assert "algorithm" in str(assert_rejected(keys, "ed25519", armored))


def test_it_rejects_an_rsa_signature_using_sha1(keys):
    armored = sign_with_cryptography(keys["rsa2048"], MESSAGE, NAMESPACE, sig_alg="ssh-rsa")
    assert "algorithm" in str(assert_rejected(keys, "rsa2048", armored))


@pytest.mark.parametrize("hash_alg", ["sha1", "md5", "SHA512", ""])
def test_it_rejects_an_unsupported_message_hash_even_when_correctly_signed(keys, hash_alg):
    armored = sign_with_cryptography(keys["ed25519"], MESSAGE, NAMESPACE, hash_alg=hash_alg)
    assert "hash" in str(assert_rejected(keys, "ed25519", armored))


def test_it_rejects_version_2_even_when_correctly_signed(keys):
    armored = sign_with_cryptography(keys["ed25519"], MESSAGE, NAMESPACE, version=2)
    assert "version" in str(assert_rejected(keys, "ed25519", armored))


def test_it_rejects_the_wrong_magic(keys, signatures):
    armored = with_fields(signatures["ed25519"], magic=b"SSHSIH")
    assert "SSHSIG" in str(assert_rejected(keys, "ed25519", armored))


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa256", "rsa2048"])
def test_it_rejects_trailing_data_after_the_envelope(keys, signatures, kind):
    armored = armor(dearmor(signatures[kind]) + b"\x00")
    assert "trailing" in str(assert_rejected(keys, kind, armored))


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa256", "rsa2048"])
def test_it_rejects_trailing_data_inside_the_signature_blob(keys, signatures, kind):
    armored = with_fields(signatures[kind], signature=envelope_fields(signatures[kind]).signature + b"\x00")
    assert "trailing" in str(assert_rejected(keys, kind, armored))


def test_it_rejects_a_negative_ecdsa_integer(keys, signatures):
    algorithm, sig_bytes = read_strings(envelope_fields(signatures["ecdsa256"]).signature)
    r, s = read_strings(sig_bytes)
    negative_r = ssh_string(b"\x80" + r.lstrip(b"\x00")) + ssh_string(s)
    signature = ssh_string(algorithm) + ssh_string(negative_r)
    armored = with_fields(signatures["ecdsa256"], signature=signature)
    assert "negative" in str(assert_rejected(keys, "ecdsa256", armored))


def test_it_rejects_a_length_field_that_runs_past_the_end(keys, signatures):
    raw = dearmor(signatures["ed25519"])
    huge = raw[:10] + b"\xff\xff\xff\xff" + raw[14:]
    assert "truncated" in str(assert_rejected(keys, "ed25519", armor(huge)))


def test_it_rejects_truncated_armour(keys, signatures):
    armored = signatures["ed25519"]
    assert_rejected(keys, "ed25519", armored[: len(armored) // 2])


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa256"])
def test_every_truncation_of_the_envelope_raises_signature_error(keys, signatures, kind):
    raw = dearmor(signatures[kind])
    key = public(keys, kind)
    for length in range(len(raw)):
        with pytest.raises(SignatureError):
            verify_sshsig(key, MESSAGE, armor(raw[:length]), NAMESPACE)


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa256"])
def test_every_single_byte_corruption_raises_signature_error(keys, signatures, kind):
    raw = dearmor(signatures[kind])
    key = public(keys, kind)
    for position in range(len(raw)):
        corrupted = raw[:position] + bytes([raw[position] ^ 0xFF]) + raw[position + 1 :]
        with pytest.raises(SignatureError):
            verify_sshsig(key, MESSAGE, armor(corrupted), NAMESPACE)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda a: a.replace("-----BEGIN SSH SIGNATURE-----", ""),
        lambda a: a.replace("-----END SSH SIGNATURE-----", ""),
        lambda a: "\n".join(a.strip().splitlines()[1:-1]),
        lambda a: a.replace("SSH SIGNATURE", "PGP SIGNATURE"),
        lambda a: "leading text\n" + a,
    ],
    ids=["no-begin", "no-end", "no-markers", "pgp-markers", "text-before"],
)
def test_it_rejects_armour_without_the_ssh_signature_markers(keys, signatures, mangle):
    assert "armour" in str(assert_rejected(keys, "ed25519", mangle(signatures["ed25519"])))


@pytest.mark.parametrize("body", ["not base64 at all!", "U1NIU0lH*AAAA", "U1NIU0lHA"])
def test_it_rejects_garbage_base64(keys, body):
    armored = f"-----BEGIN SSH SIGNATURE-----\n{body}\n-----END SSH SIGNATURE-----"
    assert_rejected(keys, "ed25519", armored)


def test_it_rejects_non_ascii_in_the_armour_body(keys, signatures):
    armored = signatures["ed25519"].replace("U1NI", "U1NÏ", 1)
    assert "base64" in str(assert_rejected(keys, "ed25519", armored))


def test_it_rejects_oversized_armour_before_decoding(keys, signatures):
    armored = signatures["ed25519"] + " " * MAX_ARMORED_LENGTH
    assert "too large" in str(assert_rejected(keys, "ed25519", armored))


def test_it_rejects_a_signature_for_a_hand_made_public_key_that_does_not_load(signatures):
    broken = PublicKey(key_type="ssh-ed25519", blob=b"\x00\x00\x00\x01x", comment="")
    with pytest.raises(SignatureError):
        verify_sshsig(broken, MESSAGE, signatures["ed25519"], NAMESPACE)


def test_it_rejects_a_signature_for_a_hand_made_1024_bit_rsa_public_key(keys):
    # parse_public_key refuses such keys; verify_sshsig must not trust that it was used.
    line = public_key_line(keys["rsa1024"])
    weak = PublicKey(key_type="ssh-rsa", blob=base64.b64decode(line.split()[1]))
    armored = sign(keys["rsa1024"], MESSAGE, NAMESPACE)
    with pytest.raises(SignatureError, match="too small"):
        verify_sshsig(weak, MESSAGE, armored, NAMESPACE)


def random_corruptions(data: bytes, count: int = 300) -> Iterator[bytes]:
    """Seeded (so failures reproduce) overwrites, deletions and insertions of a few bytes."""
    rng = random.Random(len(data))
    for _ in range(count):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            position, roll = rng.randrange(len(mutated) + 1), rng.random()
            if roll < 0.5 and position < len(mutated):
                mutated[position] = rng.randrange(256)
            elif roll < 0.75:
                del mutated[position : position + rng.randint(1, 8)]
            else:
                mutated[position:position] = rng.randbytes(rng.randint(1, 8))
        if mutated != data:  # e.g. a byte overwritten with its own value
            yield bytes(mutated)


@pytest.mark.parametrize("kind", SIGNING_KINDS)
def test_random_corruptions_of_a_key_blob_only_ever_raise_ssh_key_error(keys, kind):
    key_type = KEY_TYPES[kind][0]
    for blob in random_corruptions(public(keys, kind).blob):
        with contextlib.suppress(SshKeyError):  # some corruptions are still valid keys
            parse_public_key(key_line(key_type, blob))


@pytest.mark.parametrize("kind", SIGNING_KINDS)
def test_random_corruptions_of_a_signature_only_ever_raise_signature_error(keys, signatures, kind):
    key = public(keys, kind)
    for raw in random_corruptions(dearmor(signatures[kind])):
        with pytest.raises(SignatureError):
            verify_sshsig(key, MESSAGE, armor(raw), NAMESPACE)


def test_random_text_only_ever_raises_ssh_key_error_or_signature_error(keys, signatures):
    rng = random.Random(7)
    alphabet = "AQgw+/=- \n\t\x00é\u2028" + signatures["ed25519"]
    key = public(keys, "ed25519")
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(200)))
        with contextlib.suppress(SshKeyError):
            parse_public_key(rng.choice(["ssh-ed25519 ", "ssh-rsa ", ""]) + text)
        with pytest.raises(SignatureError):
            verify_sshsig(key, MESSAGE, armor(text.encode()) if rng.random() < 0.5 else text, NAMESPACE)
