"""Where a websocket's credential comes from, in the order of API.md."""

from urllib.parse import parse_qs

from django.conf import settings

from native_api.auth import bearer_from_header

TICKET, BEARER = "ticket", "bearer"


def from_scope(scope) -> tuple[str, str] | None:
    """(kind, raw) from ``?ticket=``, then ``Authorization: Bearer``, then ``?token=``; else None."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if query.get("ticket"):
        return TICKET, query["ticket"][0]
    headers = dict(scope.get("headers", []))
    bearer = bearer_from_header(headers.get(b"authorization", b"").decode("latin-1"))
    if bearer:
        return BEARER, bearer
    if settings.NATIVE_WS_ALLOW_QUERY_TOKEN and query.get("token"):
        return BEARER, query["token"][0]
    return None


def from_auth_frame(frame: dict) -> tuple[str, str] | None:
    if isinstance(frame.get("ticket"), str):
        return TICKET, frame["ticket"]
    if isinstance(frame.get("token"), str):
        return BEARER, frame["token"]
    return None
