"""Credentials: SSH keys, native bearer tokens, used login nonces, used websocket tickets, the
deny-list; and what logins are checked against: security-key counters, trusted certificate
authorities, the certificates that logged in, and the key revocation list (KRL) in force.

No secret is stored: tokens are kept as SHA-256 digests (they carry 256 bits of randomness, so a
plain hash cannot be brute-forced) and looked up by digest; nonces and tickets are signed, and
only a record of a used one is kept. Public keys, certificates and KRLs are public
material, kept whole.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone

from tokens.managers import (
    NativeTokenQuerySet,
    SecurityKeyCounterQuerySet,
)


class SshKey(models.Model):
    """An OpenSSH public key a user logs in with."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ssh_keys")
    name = models.CharField(max_length=100, blank=True)
    key_type = models.CharField(max_length=40)
    public_key = models.TextField(help_text="Canonical 'TYPE BASE64' line, without comment.")
    fingerprint = models.CharField(max_length=60, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    verify_required = models.BooleanField(
        default=False,
        db_default=False,  # rows inserted in SQL (bench seeds) need not name it
        help_text="Security keys only: a login must also prove user verification (a PIN or biometric), "
        "not just a touch.",
    )

    class Meta:
        verbose_name = "SSH key"
        ordering = ["user_id", "created_at"]

    def __str__(self):
        return f"{self.name or self.key_type} {self.fingerprint}"


class SecurityKeyCounter(models.Model):
    """The highest signature counter a security key has reported, by key fingerprint.

    By fingerprint rather than on SshKey, so that one rule covers registered keys and the keys
    of certificates (which are not registered), and a key deleted and added again keeps its
    history. tokens.security_keys says why the counter matters.
    """

    fingerprint = models.CharField(max_length=60, unique=True)
    highest = models.BigIntegerField()
    updated_at = models.DateTimeField(default=timezone.now)

    objects = SecurityKeyCounterQuerySet.as_manager()

    class Meta:
        verbose_name = "security key counter"

    def __str__(self):
        return f"{self.fingerprint}: {self.highest}"


class CertificateAuthority(models.Model):
    """A CA whose user certificates log in without their keys being registered."""

    name = models.CharField(max_length=100, unique=True)
    key_type = models.CharField(max_length=40, editable=False)
    public_key = models.TextField(help_text="Canonical 'TYPE BASE64' line of the CA's public key.")
    fingerprint = models.CharField(max_length=60, unique=True, editable=False)
    principals = models.TextField(
        blank=True,
        help_text="Usernames this CA may certify, separated by commas; empty: any user.",
    )
    added_by = models.CharField(max_length=150, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name = "SSH certificate authority"
        verbose_name_plural = "SSH certificate authorities"
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} ({self.fingerprint})"

    @property
    def principal_list(self) -> list[str]:
        return [name.strip() for name in self.principals.split(",") if name.strip()]

    def may_certify(self, username: str) -> bool:
        allowed = self.principal_list
        return not allowed or username in allowed


class SshCertificate(models.Model):
    """A user certificate that logged in: what the tokens issued through it point to.

    ``certificate`` keeps the whole line (public, signed by its CA), so a KRL loaded later can
    be checked against everything OpenSSH checks (serial, key ID, the certified key by hash,
    the CA key). ``serial`` is text: a serial is a 64-bit unsigned number, more than a signed
    BIGINT holds, and CAs such as Vault pick them at random over the whole range.
    """

    identity = models.CharField(max_length=60, unique=True, editable=False)  # see tokens.certificate_login
    authority = models.ForeignKey(
        CertificateAuthority, null=True, blank=True, on_delete=models.SET_NULL, related_name="certificates"
    )
    authority_fingerprint = models.CharField(max_length=60, db_index=True)
    serial = models.CharField(max_length=20)
    key_id = models.CharField(max_length=255, blank=True, verbose_name="key ID")
    principals = models.TextField(blank=True)
    key_type = models.CharField(max_length=60)
    key_fingerprint = models.CharField(max_length=60, db_index=True, verbose_name="certified key")
    valid_after = models.DateTimeField()
    valid_before = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    certificate = models.TextField()
    first_used_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "SSH certificate"
        ordering = ["-first_used_at", "-id"]
        indexes = [models.Index(fields=["valid_before"], name="sshcert_valid_before")]

    def __str__(self):
        return f"serial {self.serial}, key ID {self.key_id!r}"


class RevocationList(models.Model):
    """The OpenSSH key revocation list in force (at most one row: loading replaces it)."""

    data = models.BinaryField(editable=False)
    source = models.CharField(max_length=255, blank=True, help_text="The file it was loaded from.")
    loaded_at = models.DateTimeField(default=timezone.now)
    loaded_by = models.CharField(max_length=150, blank=True)
    version = models.CharField(max_length=20, blank=True, help_text="The KRL's own version number.")
    generated_at = models.DateTimeField(null=True, blank=True)
    comment = models.CharField(max_length=255, blank=True)
    summary = models.JSONField(default=dict, help_text="What it revokes, counted.")

    class Meta:
        verbose_name = "key revocation list (KRL)"
        verbose_name_plural = "key revocation list (KRL)"
        ordering = ["-loaded_at"]

    def __str__(self):
        return f"KRL version {self.version or '0'} loaded {self.loaded_at:%Y-%m-%d %H:%M:%S}"


class NativeToken(models.Model):
    """A bearer token handed to a native client after SSH-key login."""

    # Revoking is its own permission: tokens are never edited, and a staff member who may revoke
    # need not be able to do anything else (docs/operations-admin.md, "Staff roles").
    REVOKE_PERMISSION = "tokens.revoke_nativetoken"

    public_id = models.CharField(max_length=32, unique=True, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="native_tokens")
    ssh_key = models.ForeignKey(SshKey, null=True, blank=True, on_delete=models.SET_NULL)
    # The key that signed the login (a certificate's certified key), set when the token is
    # issued; on older tokens only when their key was deleted (tokens.key_history).
    ssh_key_fingerprint = models.CharField(
        max_length=60, blank=True, editable=False, default="", db_default=""
    )
    # Set when the login presented a certificate: its serial, key ID and CA are there.
    certificate = models.ForeignKey(
        SshCertificate, null=True, blank=True, on_delete=models.SET_NULL, related_name="tokens"
    )
    device_name = models.CharField(max_length=100, blank=True)
    user_agent = models.CharField(max_length=255, blank=True)
    created_ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True, db_index=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    revoked_reason = models.CharField(max_length=200, blank=True)

    objects = NativeTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("revoke_nativetoken", "Can revoke native token")]
        indexes = [
            models.Index(fields=["user", "revoked_at", "expires_at"]),
            models.Index(
                fields=["ssh_key_fingerprint"],
                condition=~models.Q(ssh_key_fingerprint=""),
                name="token_deleted_key_fp",
            ),
        ]

    def __str__(self):
        return f"{self.public_id} ({self.user})"

    @property
    def is_live(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.expires_at > timezone.now() else "expired"


class LoginNonce(models.Model):
    """A login nonce that has been used (POST token): the record that makes it single-use.

    Challenges are stateless (tokens.challenges): GET challenge stores nothing, and a row is
    written when a nonce is first used, keyed by the digest of its random part, and kept until
    the nonce has expired. (Rows of versions that stored every nonce have ``used_at`` null.)
    """

    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"nonce {self.pk}"


class UsedTicket(models.Model):
    """A websocket ticket that has been claimed: its single use, recorded once.

    Tickets are signed and stored nowhere when minted (tokens.tickets); the verifier inserts
    the claim key of each ticket it accepts, and the primary key refuses a second insert of the
    same ticket, in any process. Nothing secret is kept: the key is the ticket's expiry and
    random id, which cannot be used without the signature. purge_tokens deletes claims whose
    ticket has expired (tokens.purge).
    """

    key = models.CharField(max_length=40, primary_key=True)

    def __str__(self):
        return f"used ticket {self.key}"


class RevokedToken(models.Model):
    """The deny-list: a credential id (service-token jti or native token id) that must not work."""

    jti = models.CharField(max_length=64, unique=True, verbose_name="token id / jti")
    expires_at = models.DateTimeField(
        db_index=True, help_text="When the revoked token would have expired anyway."
    )
    revoked_at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=200, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-revoked_at"]

    def __str__(self):
        return self.jti


class CredentialFloor(models.Model):
    """``revoke_user_tokens``: every credential of this user minted before ``not_before`` is dead.

    Native tokens are also revoked row by row; the floor is what kills service tokens, which
    have no row. The verifier reads it from the in-process revocation copy (tokens.denylist),
    so checking it costs no query.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="credential_floor"
    )
    not_before = models.DateTimeField()

    def __str__(self):
        return f"credentials of {self.user_id} before {self.not_before}"
