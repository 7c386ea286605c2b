"""What a security-key signature must show before it logs in (API.md, Identity).

`ssh-keygen -Y verify` only logs a security key's flags and counter; sshd enforces presence
(unless `no-touch-required`) and verification (`verify-required`), and nobody checks the counter.
We enforce all three, because a login is exactly the moment an authenticator was meant for:
- user presence: the key was touched, so malware on the client cannot sign in the background;
- user verification, when the key or certificate requires it: a PIN or biometric was given;
- the counter went up since the highest this key ever reported, so a cloned authenticator that
  replays old counters is refused. An authenticator that always reports 0 (some do, to avoid
  being tracked) has no counter to compare and keeps working; one that reported more and then 0
  is refused like any counter that went back.
The counter itself is remembered in the database (tokens.models.SecurityKeyCounter); the
atomic "raise it if it goes up" step is SecurityKeyCounter.objects.advance().
"""

from tokens.ssh_keys import SecurityKeySignature


class SecurityKeyRefused(ValueError):
    """A valid security-key signature that our policy refuses (presence, verification)."""


def check_flags(report: SecurityKeySignature, *, require_verification: bool) -> None:
    if not report.user_present:
        raise SecurityKeyRefused("the security key was not touched (no user presence)")
    if require_verification and not report.user_verified:
        raise SecurityKeyRefused("the security key requires a PIN or biometric (no user verification)")


def counter_acceptable(highest_seen: int | None, counter: int) -> bool:
    """The pure rule: above the highest seen, or 0 from a key that never reported more."""
    if highest_seen is None:
        return True
    if counter == 0:
        return highest_seen == 0
    return counter > highest_seen
