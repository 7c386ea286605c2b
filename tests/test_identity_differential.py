"""Certificate and security-key logins against the real `ssh-keygen -Y verify`.

Each case is a login: a public key line (a certificate, or a registered security key), an
SSHSIG over the challenge, and the trust OpenSSH is given as an allowed_signers file
(`cert-authority` lines for CAs, optionally restricted to principals; the plain key line for a
security key). OpenSSH is asked `ssh-keygen -Y verify -I alice`; we run the login itself
(tokens.login.exchange, on the test database: CA rows, users, keys and counters). Both must
agree, except where our policy is deliberately stricter: each such case is listed in STRICTER
with its reason, and must be one OpenSSH accepts and we refuse.

Certificates: every key type as CA (Ed25519, ECDSA P-256/384/521, RSA) and as subject (the
same, signed by `ssh-keygen -Y sign -f KEY-cert.pub`; and software-built security keys
certified by `ssh-keygen -s`), then expired, not yet valid, wrong principal, several
principals, host certificate, no principal, untrusted or restricted CA, critical options,
source-address in and out, a SHA-1 CA signature, mutated bytes, a plain-key signature sent
with a certificate. Security keys: flags, counters, applications and mutated fields.
"""

from __future__ import annotations

import base64
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.ssh_helpers import (
    SK_FLAG_USER_PRESENT,
    SK_FLAG_USER_VERIFIED,
    Envelope,
    SoftwareSecurityKey,
    certify,
    make_keys,
    pub_path,
    sign,
    sign_with_agent,
    ssh_agent,
    ssh_keygen_verifies,
    ssh_keygen_verifies_with_ca,
)
from tokens import login
from tokens.authorities import add_authority
from tokens.exceptions import LoginRejected
from tokens.models import CertificateAuthority
from tokens.ssh_certificates import CertificateError, is_certificate_line, parse_certificate
from tokens.ssh_keys import SshKeyError, parse_public_key

NAMESPACE = "native-api-login"  # settings.NATIVE_SIGNATURE_NAMESPACE
NONCE = "differential-nonce-4c1f"
MESSAGE = NONCE.encode()
KINDS = ["ed25519", "ecdsa256", "ecdsa384", "ecdsa521", "rsa2048"]
CLIENT_IP = "127.0.0.1"

STRICTER = {
    "policy/principals-name-two-users": "a certificate whose principals name two users is ambiguous: refused",
    "policy/critical-option-unknown": "critical options we do not enforce are refused (verify ignores them)",
    "policy/critical-force-command": "force-command cannot be enforced by a login, so it is refused",
    "policy/source-address-out": "source-address is checked against the client address (verify has none)",
    "policy/sha1-rsa-ca-signature": "CA signatures with SHA-1 (ssh-rsa) are refused",
    "policy/sk-verify-required-without-uv": "verify-required is enforced on security-key signatures",
    "sk/*/no-presence": "a security-key signature needs the user-presence flag",
    "sk/*/verify-required-key-without-uv": "a key registered --verify-required needs the user-verified flag",
    "sk/*/counter-went-back": "a counter not above the highest seen is refused (cloned key)",
    "sk/*/counter-repeated": "a counter not above the highest seen is refused (cloned key)",
}


@dataclass
class Case:
    name: str
    public_key: str
    armored: str
    trusted: list[tuple[str, str]] = field(default_factory=list)  # (CA key line, principals)
    principal: str = "alice"
    client_ip: str = CLIENT_IP

    def allowed_signers(self) -> list[str]:
        return [f"{principals or '*'} cert-authority {line}" for line, principals in self.trusted]


def stricter_reason(name: str) -> str | None:
    from fnmatch import fnmatchcase

    return next((reason for pattern, reason in STRICTER.items() if fnmatchcase(name, pattern)), None)


def cert_blob(path: Path) -> bytes:
    return base64.b64decode(path.read_text().split()[1])


# --- building the certificate cases ------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("identity-diff")
    keys = make_keys(directory, {**{f"ca-{k}": k for k in KINDS}, **{f"user-{k}": k for k in KINDS}})
    return {"dir": directory, "keys": keys, "count": [0]}


def ca_line(pki, kind: str = "ed25519") -> str:
    return " ".join(pub_path(pki["keys"][f"ca-{kind}"]).read_text().split()[:2])


def issued(pki, subject: str = "ed25519", ca: str = "ed25519", **options) -> Path:
    """A fresh copy of a subject key with a certificate beside it: DIR/id and DIR/id-cert.pub."""
    pki["count"][0] += 1
    case_dir = pki["dir"] / f"case-{pki['count'][0]}"
    case_dir.mkdir()
    shutil.copy(pki["keys"][f"user-{subject}"], case_dir / "id")
    shutil.copy(pub_path(pki["keys"][f"user-{subject}"]), case_dir / "id.pub")
    (case_dir / "id").chmod(0o600)
    options.setdefault("principals", ["alice"])
    return certify(pki["keys"][f"ca-{ca}"], case_dir / "id.pub", **options)


def certificate_case(pki, name, *, subject="ed25519", ca="ed25519", trusted=None, **options) -> Case:
    cert = issued(pki, subject, ca, **options)
    return Case(
        name,
        cert.read_text().strip(),
        sign(cert, MESSAGE, NAMESPACE),  # ssh-keygen -Y sign -f DIR/id-cert.pub
        trusted=[(ca_line(pki, ca), "")] if trusted is None else trusted,
    )


def sk_certificate_case(pki, name, sk_kind, *, flags=SK_FLAG_USER_PRESENT, **options) -> Case:
    sk = SoftwareSecurityKey(sk_kind)
    pki["count"][0] += 1
    pub = sk.write_pub(pki["dir"], f"sk-{pki['count'][0]}")
    options.setdefault("principals", ["alice"])
    cert = certify(pki["keys"]["ca-ed25519"], pub, **options)
    armored = sk.sign(MESSAGE, NAMESPACE, embedded=cert_blob(cert), flags=flags, counter=pki["count"][0])
    return Case(name, cert.read_text().strip(), armored, trusted=[(ca_line(pki), "")])


def mutated(case: Case, name: str, position: int) -> Case:
    """The same login with one byte of the certificate changed, in the key line and the SSHSIG."""
    key_type, text = case.public_key.split()[:2]
    blob = bytearray(base64.b64decode(text))
    blob[position] ^= 0x01
    envelope = Envelope.parse(case.armored).replace(publickey=bytes(blob))
    line = f"{key_type} {base64.b64encode(bytes(blob)).decode()}"
    return Case(name, line, envelope.armored(), case.trusted)


def certificate_cases(pki) -> list[Case]:
    cases = [
        certificate_case(pki, f"matrix/ca-{ca}/user-{user}", subject=user, ca=ca)
        for ca in KINDS
        for user in KINDS
    ]
    cases += [
        sk_certificate_case(pki, f"matrix/ca-ed25519/user-sk-{kind}", kind) for kind in ("ed25519", "ecdsa")
    ]
    base = certificate_case(pki, "policy/valid-for-an-hour", validity="-5m:+1h", serial=77)
    alice_only = ca_line(pki), "alice"
    cases += [
        base,
        certificate_case(pki, "policy/expired", validity="-2h:-1h"),
        certificate_case(pki, "policy/not-yet-valid", validity="+1h:+2h"),
        certificate_case(pki, "policy/wrong-principal", principals=["nobody"]),
        certificate_case(pki, "policy/several-principals", principals=["dev", "alice", "qa"]),
        certificate_case(pki, "policy/principals-name-two-users", principals=["ops", "alice"]),
        certificate_case(pki, "policy/principal-case-differs", principals=["Alice"]),
        certificate_case(pki, "policy/host-certificate", host=True),
        certificate_case(pki, "policy/untrusted-ca", trusted=[(ca_line(pki, "ecdsa256"), "")]),
        certificate_case(pki, "policy/ca-restricted-to-alice", trusted=[alice_only]),
        certificate_case(pki, "policy/ca-restricted-to-bob", trusted=[(ca_line(pki), "bob")]),
        certificate_case(pki, "policy/critical-option-unknown", options=["critical:no-such-option=x"]),
        certificate_case(pki, "policy/critical-force-command", options=["force-command=/bin/true"]),
        certificate_case(pki, "policy/source-address-in", options=["source-address=127.0.0.0/8,10.1.0.0/16"]),
        certificate_case(pki, "policy/source-address-out", options=["source-address=10.1.0.0/16"]),
        certificate_case(pki, "policy/verify-required-plain-key", options=["verify-required"]),
        certificate_case(pki, "policy/extensions-cleared", options=["clear"]),
        certificate_case(pki, "policy/sha1-rsa-ca-signature", ca="rsa2048", signature_algorithm="ssh-rsa"),
        sk_certificate_case(
            pki, "policy/sk-verify-required-without-uv", "ed25519", options=["verify-required"]
        ),
        sk_certificate_case(
            pki,
            "policy/sk-verify-required-with-uv",
            "ecdsa",
            options=["verify-required"],
            flags=SK_FLAG_USER_PRESENT | SK_FLAG_USER_VERIFIED,
        ),
    ]
    no_principal = issued(pki, principals=[])
    no_principal_case = Case(
        "policy/no-principal", no_principal.read_text(), sign(no_principal, MESSAGE, NAMESPACE)
    )
    no_principal_case.trusted = [(ca_line(pki), "")]
    plain = issued(pki)
    plain_signature = Case(
        "policy/plain-key-signature-with-a-certificate",
        plain.read_text().strip(),
        sign(plain.with_name("id"), MESSAGE, NAMESPACE),  # -f DIR/id: the plain key is embedded
        trusted=[(ca_line(pki), "")],
    )
    ca_itself = Case(
        "policy/signed-by-the-ca-key-itself",
        ca_line(pki),
        sign(pki["keys"]["ca-ed25519"], MESSAGE, NAMESPACE),
        trusted=[(ca_line(pki), "")],
    )
    cases += [no_principal_case, plain_signature, ca_itself]
    with ssh_agent(plain.with_name("id")) as env:  # ssh-add loads id-cert.pub beside id too
        agent_signed = sign_with_agent(plain, MESSAGE, NAMESPACE, env)
    cases.append(
        Case("policy/signed-through-ssh-agent", plain.read_text().strip(), agent_signed, base.trusted)
    )
    blob_length = len(cert_blob(plain))
    for name, position in {"nonce": 40, "serial": 100, "signature": blob_length - 10}.items():
        cases.append(mutated(base, f"mutated/{name}", position))
    return cases


# --- running both ------------------------------------------------------------------------------------


def openssh_accepts(case: Case, directory: Path) -> bool:
    if not case.trusted:  # a registered plain key: the allowed_signers file names it
        return ssh_keygen_verifies(case.public_key, MESSAGE, case.armored, NAMESPACE, directory)
    return ssh_keygen_verifies_with_ca(
        case.allowed_signers(), case.principal, MESSAGE, case.armored, NAMESPACE, directory
    )


def we_accept(case: Case, *, set_up_trust: bool = True) -> bool:
    if set_up_trust:
        CertificateAuthority.objects.all().delete()
        for number, (line, principals) in enumerate(case.trusted):
            add_authority(f"ca-{number}", line, principals=principals)
    try:
        signer = (
            parse_certificate(case.public_key)
            if is_certificate_line(case.public_key)
            else parse_public_key(case.public_key)
        )
        login.exchange(
            login.LoginRequest(
                public_key=signer, nonce=NONCE, signature=case.armored, client_ip=case.client_ip
            )
        )
    except (LoginRejected, CertificateError, SshKeyError):
        return False
    return True


def verdicts(cases: list[Case], directory: Path, **options) -> dict[str, tuple[bool, bool]]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        theirs = list(pool.map(lambda case: openssh_accepts(case, directory), cases))
    return {
        case.name: (openssh, we_accept(case, **options)) for case, openssh in zip(cases, theirs, strict=True)
    }


def check(results: dict[str, tuple[bool, bool]]) -> None:
    wrong = []
    for name, (openssh, ours) in results.items():
        reason = stricter_reason(name)
        expected = (True, False) if reason else (openssh, openssh)
        if (openssh, ours) != expected:
            theirs, mine = "accepts" if openssh else "refuses", "accept" if ours else "refuse"
            listed = f" (listed as stricter: {reason})" if reason else ""
            wrong.append(f"  {name}: OpenSSH {theirs}, we {mine}{listed}")
    assert not wrong, "disagreements with ssh-keygen -Y verify:\n" + "\n".join(wrong)


@pytest.fixture
def users(django_user_model):
    return {name: django_user_model.objects.create_user(username=name) for name in ("alice", "bob", "ops")}


def test_certificate_logins_agree_with_ssh_keygen_except_where_listed(pki, users, tmp_path):
    results = verdicts(certificate_cases(pki), tmp_path)
    check(results)
    # Not vacuous: every key type signs and certifies, and the refusals are for their reasons.
    for ca in KINDS:
        for user in KINDS:
            assert results[f"matrix/ca-{ca}/user-{user}"] == (True, True)
    for name in (
        "several-principals",
        "source-address-in",
        "sk-verify-required-with-uv",
        "signed-through-ssh-agent",
    ):
        assert results[f"policy/{name}"] == (True, True), name
    for name in (
        "expired",
        "not-yet-valid",
        "wrong-principal",
        "host-certificate",
        "untrusted-ca",
        "no-principal",
    ):
        assert results[f"policy/{name}"] == (False, False), name


# --- security keys registered as keys ------------------------------------------------------------------


def sk_cases(kind: str) -> list[tuple[Case, dict]]:
    """(case, how to register the key) in order: counters build on the cases before."""
    sk, strict = SoftwareSecurityKey(kind), SoftwareSecurityKey(kind)
    always_zero = SoftwareSecurityKey(kind)
    line = sk.line()

    def case(name, key=sk, **options):
        return Case(f"sk/{kind}/{name}", key.line(), key.sign(MESSAGE, NAMESPACE, **options))

    envelope = Envelope.parse(sk.sign(MESSAGE, NAMESPACE, counter=50))
    flipped_flags = bytearray(envelope.signature)
    flipped_flags[-5] ^= SK_FLAG_USER_VERIFIED
    flipped_counter = bytearray(envelope.signature)
    flipped_counter[-1] ^= 0x01
    relabelled = SoftwareSecurityKey(kind, application=b"ssh:other", private=sk.private)
    return [
        (case("first-login", counter=10), {}),
        (case("counter-went-up", counter=11), {}),
        (case("counter-repeated", counter=11), {}),
        (case("counter-went-back", counter=9), {}),
        (case("no-presence", counter=12, flags=0), {}),
        (case("verified-too", counter=13, flags=SK_FLAG_USER_PRESENT | SK_FLAG_USER_VERIFIED), {}),
        (case("other-application", counter=14, application=b"ssh:other"), {}),
        (
            case("plain-algorithm-name", counter=15, algorithm=sk.key_type.replace("sk-", "").split("@")[0]),
            {},
        ),
        (
            Case(
                f"sk/{kind}/flags-changed-after-signing",
                line,
                envelope.replace(signature=bytes(flipped_flags)).armored(),
            ),
            {},
        ),
        (
            Case(
                f"sk/{kind}/counter-changed-after-signing",
                line,
                envelope.replace(signature=bytes(flipped_counter)).armored(),
            ),
            {},
        ),
        (
            Case(
                f"sk/{kind}/trailing-byte",
                line,
                envelope.replace(signature=envelope.signature + b"\0").armored(),
            ),
            {},
        ),
        (
            Case(
                f"sk/{kind}/embedded-key-other-application",
                line,
                envelope.replace(publickey=relabelled.blob).armored(),
            ),
            {},
        ),
        (case("signed-by-another-key", key=SoftwareSecurityKey(kind), embedded=sk.blob, counter=60), {}),
        (case("verify-required-key-without-uv", key=strict, counter=1), {"verify_required": True}),
        (
            case(
                "verify-required-key-with-uv",
                key=strict,
                counter=2,
                flags=SK_FLAG_USER_PRESENT | SK_FLAG_USER_VERIFIED,
            ),
            {},
        ),
        (case("always-zero-counter", key=always_zero, counter=0), {}),
        (case("always-zero-counter-again", key=always_zero, counter=0), {}),
    ]


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa"])
def test_security_key_logins_agree_with_ssh_keygen_except_where_listed(users, tmp_path, kind):
    ordered = sk_cases(kind)
    for case, registration in ordered:
        key = parse_public_key(case.public_key)
        if not users["alice"].ssh_keys.filter(fingerprint=key.fingerprint).exists():
            login.register_key(users["alice"], key, **registration)
    results = verdicts([case for case, _ in ordered], tmp_path, set_up_trust=False)
    check(results)
    for name in (
        "first-login",
        "counter-went-up",
        "verified-too",
        "verify-required-key-with-uv",
        "always-zero-counter-again",
    ):
        assert results[f"sk/{kind}/{name}"] == (True, True), name
