"""Why a credential or a login was refused. Each maps to one API error; none carries a secret."""


class AuthenticationFailed(Exception):
    """Base: the credential does not authenticate (API 401 / websocket 4401)."""

    reason = "unauthorized"


class MalformedCredential(AuthenticationFailed):
    """Wrong shape or checksum: refused before any database query."""

    reason = "malformed"


class UnknownCredential(AuthenticationFailed):
    """Well-formed, but no such token, ticket or nonce (or already used)."""

    reason = "unknown"


class ReplayedCredential(UnknownCredential):
    """A single-use credential (a websocket ticket) presented again."""

    reason = "replayed"


class ExpiredCredential(AuthenticationFailed):
    """The credential's lifetime is over."""

    reason = "expired"


class LifetimeExceeded(ExpiredCredential):
    """A service token meant to live longer than NATIVE_SERVICE_TOKEN_MAX_TTL allows now, or
    one so old that it does not say when it was minted."""


class RevokedCredential(AuthenticationFailed):
    """Revoked by its owner or an operator."""

    reason = "revoked"


class InactiveUser(AuthenticationFailed):
    """The credential is fine but its user is deactivated (websocket 4403)."""

    reason = "inactive"


class LoginRejected(AuthenticationFailed):
    """SSH-key login failed: bad signature, wrong namespace, unknown key, used nonce."""

    reason = "login_failed"


class CredentialCheckUnavailable(Exception):
    """A dependency needed to decide (deny-list, database) cannot be read: fail closed (503)."""
