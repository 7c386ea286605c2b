"""Changes from the log applied to this process's sockets: closes and ended subscriptions.

The poller (live.poller) reads each committed change and hands it here, in seq order, on the
event loop. A credential change closes the sockets the registry finds for it; a removed
membership or a deleted room ends the local subscriptions it allowed. The last changes applied
are kept, so that a socket that was still verifying while they were applied can replay them.
"""

from collections import deque

from foundation import metrics
from foundation.models import Change
from live import verdicts

RECENT_CHANGES = 10_000  # applied changes kept to replay for sockets that were connecting

K = Change.Kind
CREDENTIAL_KINDS = {K.TOKENS_REVOKED, K.JTIS_DENIED, K.USER_FLOOR, K.USER_DISABLED, K.USER_DELETED}
METRIC_KINDS = {  # native_control_events{kind}
    K.TOKENS_REVOKED: "credential_revoked",
    K.USER_FLOOR: "credential_revoked",
    K.JTIS_DENIED: "denylist_changed",
    K.USER_DISABLED: "user_changed",
    K.USER_DELETED: "user_changed",
    K.MEMBER_REMOVED: "membership_revoked",
    K.ROOM_DELETED: "membership_revoked",
}


class ChangeApplier:
    def __init__(self, registry, delivery):
        self.registry = registry  # live.registry.SocketRegistry
        self.delivery = delivery  # live.delivery.RoomDelivery
        self.epoch, self.applied_seq = "", 0
        self.recent: deque = deque(maxlen=RECENT_CHANGES)

    def position(self) -> tuple[str, int]:
        return self.epoch, self.applied_seq

    def replay(self, socket, since: tuple[str, int]) -> bool | None:
        """Apply to a socket that just registered the credential changes applied since ``since``
        (it was verifying meanwhile). True if it was closed, False if not, None if the changes
        since then are no longer all known (the caller checks the database instead)."""
        epoch, since = since
        if epoch != self.epoch:
            return None
        if since >= self.applied_seq:
            return False
        if not self.recent or self.recent[0].seq > since + 1:
            return None
        for change in self.recent:
            if change.seq > since and change.kind in CREDENTIAL_KINDS and _close_if_hit(change, socket):
                return True
        return False

    def apply(self, changes) -> dict[int, tuple[int, int]]:
        """Apply prepared changes in seq order; returns {seq: (sockets closed, unsubscribed)}
        for the changes that did something here."""
        effects = {}
        for change in changes:
            if change.seq <= self.applied_seq:
                continue
            counts = self._apply_one(change)
            self.applied_seq = change.seq
            self.recent.append(change)
            metrics.control_event(METRIC_KINDS.get(change.kind, "other"), change.lag())
            if counts != (0, 0):
                effects[change.seq] = counts
        return effects

    def skip_to(self, epoch: str, seq: int) -> None:
        """The log was reset or purged past us: the poller reconciles from the tables instead."""
        self.epoch, self.applied_seq = epoch, seq
        self.recent.clear()

    def _apply_one(self, change) -> tuple[int, int]:
        kind, data = change.kind, change.data
        if kind in CREDENTIAL_KINDS:
            targets = self.registry.matching(change.user_ids(), change.credential_ids())
            return sum(_close_if_hit(change, socket) for socket in targets), 0
        if kind == K.MEMBER_REMOVED and not change.still_member:
            subs = self.delivery.of_user_in_room(data["user"], data["room"])
        elif kind == K.ROOM_DELETED:
            subs = self.delivery.of_room(data["room"])
        else:
            return 0, 0
        for sub in subs:
            self.delivery.end(sub, "membership_revoked")
        return 0, len(subs)

    # --- reconciliation (the log cannot say what changed) ------------------------------------

    def snapshot(self) -> dict:
        """What the poller needs to reconcile this process against the tables."""
        return {
            "credentials": self.registry.credentials(),
            "users": self.registry.users(),
            "subscriptions": self.delivery.pairs(),
        }

    def apply_reconciliation(self, dead_credentials, disabled_users, deleted_users, lost_memberships) -> int:
        closed = 0
        # The user's state first: an inactive user's sockets close 4403, not 4401.
        endings = [(u, verdicts.INACTIVE) for u in disabled_users] + [
            (u, verdicts.REVOKED) for u in deleted_users
        ]
        for user_id, verdict in endings:
            for socket in self.registry.of_user(user_id):
                socket.close(*verdict)
                closed += 1
        for cid in dead_credentials:
            for socket in self.registry.of_credential(cid):
                if not socket.closed:
                    socket.close(*verdicts.REVOKED)
                    closed += 1
        for user_id, room_id in lost_memberships:
            for sub in self.delivery.of_user_in_room(user_id, room_id):
                self.delivery.end(sub, "membership_revoked")
        return closed


def _close_if_hit(change, socket) -> bool:
    verdict = change.verdict_for(socket)
    if verdict is None or socket.closed:
        return False
    socket.close(*verdict)
    return True
