"""The in-process copy of the deny-list (RevokedToken), kept fresh without a query per request.

Each process holds the set of revoked jtis. A revocation writes a new random version into the
shared cache (Redis in production); every process compares that version on each check (one
cache GET, no database query) and reloads the set when it changed. A 60-second age limit is a
safety net, not the mechanism. If the cache cannot be read we poll the database at most once a
second; if neither can be read and we hold no copy yet, we fail closed.
"""

import logging
import threading
import time
import uuid

from django.core.cache import cache
from django.db import DatabaseError, transaction
from django.utils import timezone

from tokens.exceptions import CredentialCheckUnavailable

logger = logging.getLogger(__name__)

VERSION_KEY = "tokens:denylist:version"
_MAX_AGE = 60.0
_POLL_WITHOUT_CACHE = 1.0


class DenyList:
    def __init__(self):
        self._lock = threading.Lock()
        self._jtis: frozenset[str] = frozenset()
        self._version: str | None = None
        self._loaded_at: float | None = None

    def contains(self, jti: str) -> bool:
        try:
            version, cache_ok = cache.get(VERSION_KEY), True
        except Exception:
            version, cache_ok = None, False
        if not self._is_fresh(version, cache_ok):
            self._reload(version)
        return jti in self._jtis

    def _is_fresh(self, version, cache_ok: bool) -> bool:
        if self._loaded_at is None:
            return False
        age = time.monotonic() - self._loaded_at
        if not cache_ok:
            return age < _POLL_WITHOUT_CACHE
        return version == self._version and age < _MAX_AGE

    def _reload(self, version) -> None:
        from tokens.models import RevokedToken

        with self._lock:
            try:
                jtis = frozenset(
                    RevokedToken.objects.filter(expires_at__gt=timezone.now()).values_list("jti", flat=True)
                )
            except DatabaseError:
                if self._loaded_at is None:
                    raise CredentialCheckUnavailable("the deny-list cannot be read") from None
                logger.warning("deny-list reload failed; keeping the copy loaded earlier")
                return
            self._jtis, self._version, self._loaded_at = jtis, version, time.monotonic()

    def forget(self) -> None:
        """Drop the local copy (tests, and after a local revocation)."""
        self._loaded_at = None


denylist = DenyList()


def announce_change() -> None:
    """Tell every process to reload, once the current transaction has committed."""

    def bump():
        denylist.forget()
        try:
            cache.set(VERSION_KEY, uuid.uuid4().hex, timeout=None)
        except Exception:
            logger.error("could not publish the deny-list version; other processes reload within 60 s")

    transaction.on_commit(bump)
