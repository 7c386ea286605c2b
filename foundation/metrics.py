"""Every metric /metrics exports, declared once, and the one-line calls that move them.

Names carry the ``native_`` prefix; counters get prometheus-client's ``_total`` suffix. Label
values come from small fixed sets (never a user, a token or a room), so the number of series is
bounded. docs/operations-metrics.md lists them with their meaning and alerts worth having.

Several processes: with ``PROMETHEUS_MULTIPROC_DIR`` set (to the same empty directory for every
server process of a host, before they start), prometheus-client keeps each process's values in
a file there and /metrics on any of them answers for all: counters are summed, and the gauges of
live things (sockets, subscriptions) add up the processes that are still running (``livesum``).
Without it (the embedded default, one process), each process reports its own.

The calls are cheap (a lock and a float, or an mmap write in multiprocess mode) and never raise
for a label value outside the known set: it is recorded as ``other``.
"""

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # *_created series double the output and mean nothing in multiprocess mode

LIVE_SOCKETS = Gauge(
    "native_live_sockets",
    "Authenticated websockets open right now.",
    multiprocess_mode="livesum",
)
SUBSCRIPTIONS = Gauge(
    "native_subscriptions",
    "Room subscriptions held by open websockets right now.",
    multiprocess_mode="livesum",
)
MESSAGES_POSTED = Counter(
    "native_messages_posted",
    "Messages stored, over REST or a websocket (a repeated client_id is not counted).",
    ["targeted"],
)
DELIVERIES = Counter(
    "native_deliveries",
    "Message frames written to websockets (live and backlog).",
)
CONTROL_EVENTS = Counter(
    "native_control_events",
    "Control events acted on by a server process, by kind.",
    ["kind"],
)
CONTROL_EVENT_LAG = Histogram(
    "native_control_event_lag_seconds",
    "From the change (its commit) to a server process acting on it on its sockets.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0),
)
AUTHENTICATIONS = Counter(
    "native_authentications",
    "Credential checks (bearer on HTTP, the credential of a websocket), by outcome and reason.",
    ["transport", "outcome", "reason"],
)
LOGINS = Counter(
    "native_logins",
    "POST token attempts that reached the signature check, by what signed (key, security_key, "
    "certificate) and outcome (accepted, refused).",
    ["method", "outcome"],
)
RATE_LIMIT_REFUSALS = Counter(
    "native_rate_limit_refusals",
    "Requests, connects and frames refused by a rate limit or a cap on pending state.",
    ["limit"],
)
PURGE_RUNS = Counter(
    "native_purge_runs",
    "purge_tokens runs: ok, failed, or skipped because another purger held the lock.",
    ["outcome"],
)
PURGE_ROWS = Counter(
    "native_purge_rows",
    "Rows deleted (tokens, tickets, nonces, revocations) or cleared (client data) by purge_tokens.",
    ["kind"],
)
PURGE_LAST_SUCCESS = Gauge(
    "native_purge_last_success_timestamp_seconds",
    "Unix time of the last purge_tokens run that finished.",
    multiprocess_mode="max",
)

CHANGE_LOG_READ_AGE = Gauge(
    "native_change_log_read_age_seconds",
    "Seconds since this server process last read the whole change log (normally under the poll "
    "interval; over 1.75 s it fails closed).",
    multiprocess_mode="livemax",
)
FAILING_CLOSED = Gauge(
    "native_failing_closed",
    "1 while this server process cannot read the change log within the enforcement bound: it "
    "closes its websockets 1013 and refuses new ones.",
    multiprocess_mode="livemax",
)
FAIL_CLOSED_CLOSES = Counter(
    "native_fail_closed_closes",
    "Websockets closed 1013 because their server process could not read the change log.",
)
EVENT_LOOP_LAG = Histogram(
    "native_event_loop_lag_seconds",
    "How late this server process's fail-closed watch woke (it wakes at the last change-log "
    "read's deadline, at least once a second): a starved or stopped event loop. Near 1.75 s the "
    "process fails closed as if it could not read the change log.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.75, 3.0, 10.0),
)
GC_PAUSE = Histogram(
    "native_gc_pause_seconds",
    "Garbage collections that stopped this process: every full one (generation 2), and the younger"
    " ones that took 1 ms or more (live/heap.py).",
    ["generation"],
    buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 1.75, 3.0, 10.0),
)
GC_FROZEN_OBJECTS = Gauge(
    "native_gc_frozen_objects",
    "Objects this server process has frozen out of the garbage collector's walk (live/heap.py):"
    " it follows the sockets held; growth without them is a leak.",
    multiprocess_mode="livemax",
)
GC_THAWS_REFUSED = Counter(
    "native_gc_thaws_refused",
    "Periodic full collections skipped because the frozen heap was too large to walk in 0.5 s.",
)

TRANSPORTS = frozenset({"http", "websocket"})
OUTCOMES = frozenset({"accepted", "refused", "unavailable"})
# Refusal reasons: tokens.exceptions' ``reason`` words, and what the glue refuses before them.
REASONS = frozenset(
    {
        "none",
        "missing",
        "malformed",
        "unknown",
        "replayed",
        "expired",
        "revoked",
        "inactive",
        "unauthorized",
        "rate_limited",
    }
)
LIMITS = frozenset(
    {
        "challenge",
        "token-ip",
        "token-key",
        "auth-failures",
        "ws-ticket",
        "ws-connect",
        "ws-frames",
    }
)
LOGIN_METHODS = frozenset({"key", "security_key", "certificate"})
LOGIN_OUTCOMES = frozenset({"accepted", "refused"})
CONTROL_KINDS = frozenset({"credential_revoked", "membership_revoked", "denylist_changed", "user_changed"})
PURGE_OUTCOMES = frozenset({"ok", "failed", "skipped"})
PURGE_KINDS = {  # tokens.purge's kinds, as label values
    "tokens": "tokens",
    "tickets": "tickets",
    "nonces": "nonces",
    "revocations": "revocations",
    "certificate records": "certificates",
    "user revocation floors": "floors",
    "change log rows": "changes",
    "change effects": "change_effects",
    "server process records": "server_processes",
    "client IP/user agent": "client_data",
}


def _known(value: str, allowed: frozenset) -> str:
    return value if value in allowed else "other"


# --- the websocket hub (live sockets, subscriptions, deliveries, control events) -------------


def socket_opened() -> None:
    """A websocket authenticated (after hello)."""
    LIVE_SOCKETS.inc()


def socket_closed() -> None:
    """An authenticated websocket went away (only for sockets counted by socket_opened)."""
    LIVE_SOCKETS.dec()


def subscription_added() -> None:
    SUBSCRIPTIONS.inc()


def subscription_removed(count: int = 1) -> None:
    """One or more subscriptions ended (unsubscribe, membership revoked, the socket closed)."""
    SUBSCRIPTIONS.dec(count)


def delivered(frames: int = 1) -> None:
    """Message frames written to sockets; call once per batch, not once per frame."""
    DELIVERIES.inc(frames)


def control_event(kind: str, lag_seconds: float | None = None) -> None:
    """A control event acted on in this process; ``lag_seconds`` from its commit, when known."""
    kind = _known(kind, CONTROL_KINDS)
    CONTROL_EVENTS.labels(kind).inc()
    if lag_seconds is not None:
        CONTROL_EVENT_LAG.labels(kind).observe(max(0.0, lag_seconds))


def change_log_read_age(seconds: float) -> None:
    CHANGE_LOG_READ_AGE.set(seconds)


def failing_closed(active: bool) -> None:
    FAILING_CLOSED.set(1 if active else 0)


def closed_failing_closed(sockets: int) -> None:
    FAIL_CLOSED_CLOSES.inc(sockets)


def event_loop_lag(seconds: float) -> None:
    EVENT_LOOP_LAG.observe(seconds)


def gc_pause(generation: int, seconds: float) -> None:
    GC_PAUSE.labels(str(generation)).observe(seconds)


def gc_frozen_objects(count: int) -> None:
    GC_FROZEN_OBJECTS.set(count)


def gc_thaw_refused() -> None:
    GC_THAWS_REFUSED.inc()


# --- posting, authentication, limits, purging ------------------------------------------------


def message_posted(targeted: bool) -> None:
    MESSAGES_POSTED.labels("true" if targeted else "false").inc()


def authentication(transport: str, outcome: str, reason: str = "none") -> None:
    AUTHENTICATIONS.labels(
        _known(transport, TRANSPORTS), _known(outcome, OUTCOMES), _known(reason, REASONS)
    ).inc()


def authentication_refused(transport: str, exc: Exception | None = None, reason: str | None = None) -> None:
    """A refusal, with the reason word of a tokens.exceptions error (``exc.reason``) or given."""
    authentication(transport, "refused", reason or getattr(exc, "reason", None) or "unauthorized")


def websocket_authentication(exc: Exception | None = None, *, unavailable: bool = False) -> None:
    """For the websocket hub: call once per socket that presented a credential, with the
    exception the verifier raised (None when it was accepted)."""
    if unavailable:
        authentication("websocket", "unavailable")
    elif exc is None:
        authentication("websocket", "accepted")
    else:
        authentication_refused("websocket", exc)


def login(method: str, accepted: bool) -> None:
    """A login attempt decided by tokens.login (``method``: key, security_key or certificate)."""
    LOGINS.labels(_known(method, LOGIN_METHODS), "accepted" if accepted else "refused").inc()


def rate_limited(limit: str) -> None:
    """Something was refused by a limit (a 429, a 4429 close, a refused frame, a cap's 503)."""
    RATE_LIMIT_REFUSALS.labels(_known(limit, LIMITS)).inc()


def purge_finished(report) -> None:
    """A purge run that finished (tokens.purge.PurgeReport)."""
    PURGE_RUNS.labels("ok").inc()
    for result in report.results:
        if result.rows:
            PURGE_ROWS.labels(PURGE_KINDS.get(result.kind, "other")).inc(result.rows)
    PURGE_LAST_SUCCESS.set_to_current_time()


def purge_not_run(outcome: str) -> None:
    """``failed`` (an exception) or ``skipped`` (another purger holds the lock)."""
    PURGE_RUNS.labels(_known(outcome, PURGE_OUTCOMES)).inc()
