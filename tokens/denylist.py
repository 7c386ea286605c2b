"""The in-process copy of what kills credentials that have no row: deny-listed ids
(RevokedToken) and per-user "not valid before" floors (CredentialFloor, revoke_user_tokens).

Service tokens are verified without a row of their own, so each process keeps these two sets in
memory. The copy is exactly as fresh as the database: every query that verifies a service token
(or a ticket) also reads the change log's head seq (foundation.models.ChangeHead) in the same statement,
and a copy older than that head catches up from the change log before answering (one query, only
when something changed). So a deny-listing is refused by the very next request in every process,
with no cache and no Redis involved. Server processes also feed the copy from their change-log
poller (live.poller), so it is usually current before a request asks.

If the database cannot be read and no copy has been loaded, service tokens are refused (fail
closed); a copy loaded earlier keeps serving during an outage.
"""

import logging
import threading
import time
from datetime import datetime

from django.db import DatabaseError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from tokens.exceptions import CredentialCheckUnavailable

logger = logging.getLogger(__name__)

RELEVANT_KINDS = ("jtis_denied", "user_floor")


class DenyList:
    def __init__(self):
        self._lock = threading.Lock()
        self._jtis: dict[str, datetime] = {}  # jti → when the revoked token would expire anyway
        self._floors: dict[int, datetime] = {}
        self._epoch, self._seq = "", 0
        self._loaded = False
        self._pruned_at = 0.0

    # --- reads (the verifier) -------------------------------------------------------------

    def refuses(self, jti: str, user_id: int, issued_at: datetime | None, head) -> bool:
        """True when this service credential is deny-listed or older than its user's floor.

        ``head`` is the change log's (epoch, seq), read in the same query that verified the
        caller; None means "not known", and then it is read first.
        """
        self.sync(head)
        if jti in self._jtis:
            return True
        floor = self._floors.get(user_id)
        # Both are kept to the microsecond. A tie is refused: it cannot be told apart from "just
        # before". A token of an earlier version carries whole seconds (a time at or before its
        # real minting), so in the floor's own second it is refused too: we cannot know.
        return floor is not None and (issued_at is None or issued_at <= floor)

    def contains(self, jti: str) -> bool:
        self.sync(None)
        return jti in self._jtis

    # --- keeping it fresh -----------------------------------------------------------------

    def sync(self, head: tuple[str, int] | None) -> None:
        if self._loaded and head is not None and head == (self._epoch, self._seq):
            return
        with self._lock:
            try:
                if head is None:
                    from foundation.changelog import head_position

                    head = head_position()
                epoch, seq = head
                if not self._loaded or epoch != self._epoch or seq < self._seq:  # first use, or a new log
                    self._load()
                elif seq > self._seq:
                    self._catch_up()
            except DatabaseError:
                if not self._loaded:
                    raise CredentialCheckUnavailable("the deny-list cannot be read") from None
                logger.warning("deny-list sync failed; keeping the copy loaded earlier")

    def apply(self, changes) -> None:
        """Changes read from the log by this process's poller, in seq order, none skipped."""
        with self._lock:
            if not self._loaded:
                return  # the first sync loads everything anyway
            for change in changes:
                if change.seq == self._seq + 1:
                    self._apply_one(change.kind, change.data)
                    self._seq = change.seq

    def forget(self) -> None:
        """Drop the copy (tests)."""
        with self._lock:
            self._jtis, self._floors, self._loaded = {}, {}, False
            self._epoch, self._seq = "", 0

    def _load(self) -> None:
        from foundation.changelog import head_position
        from tokens.models import CredentialFloor, RevokedToken

        # The head first: whatever commits while we read is applied again on the next sync,
        # which is harmless (adding a jti twice is adding it once).
        epoch, seq = head_position()
        now = timezone.now()
        self._jtis = dict(RevokedToken.objects.filter(expires_at__gt=now).values_list("jti", "expires_at"))
        self._floors = dict(CredentialFloor.objects.values_list("user_id", "not_before"))
        self._epoch, self._seq, self._loaded = epoch, seq, True

    def _catch_up(self) -> None:
        from foundation.models import Change

        rows = list(Change.objects.filter(seq__gt=self._seq).order_by("seq").values_list("seq", "kind"))
        if not rows or rows[0][0] != self._seq + 1:
            return self._load()  # rows we never saw were purged, or the log was reset
        wanted = [seq for seq, kind in rows if kind in RELEVANT_KINDS]
        for kind, data in Change.objects.filter(seq__in=wanted).order_by("seq").values_list("kind", "data"):
            self._apply_one(kind, data)
        self._seq = rows[-1][0]
        self._prune()

    def _apply_one(self, kind: str, data: dict) -> None:
        if kind == "jtis_denied":
            expires = parse_datetime(data.get("expires_at") or "") or timezone.now()
            for jti in data["ids"]:
                self._jtis.setdefault(jti, expires)
        elif kind == "user_floor":
            self._floors[int(data["user"])] = parse_datetime(data["not_before"])

    def _prune(self) -> None:
        """Forget jtis whose token has expired anyway (at most once a minute: it is O(n))."""
        now = time.monotonic()
        if now - self._pruned_at < 60:
            return
        self._pruned_at = now
        wall = timezone.now()
        self._jtis = {jti: expires for jti, expires in self._jtis.items() if expires > wall}


denylist = DenyList()
