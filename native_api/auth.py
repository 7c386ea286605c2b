"""Bearer authentication for views: verify once, attach ``request.user`` and ``request.credential``."""

from functools import wraps

from foundation import metrics
from native_api import client_ip, ratelimits
from native_api.errors import UNAVAILABLE_ERRORS, error_response
from tokens.exceptions import AuthenticationFailed, InactiveUser, MalformedCredential
from tokens.verifier import verify_bearer

MAX_CREDENTIAL_LENGTH = 1024


def bearer_from_header(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, credential = value.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    return credential.strip()


LOCKED_OUT = "Too many failed authentications from your address."


def bearer_required(view, *, user_limit: str | None = None, read_with_auth=None):
    """Verify the bearer credential, then, in one round trip to the cache, read the address's
    failed-auth lockout and count ``user_limit`` (a limit of native_api.ratelimits kept per
    user, e.g. "ws-ticket") before the view runs. A locked-out address is answered 429 whatever
    it carries; one this process has already seen locked out is answered before any I/O.

    ``read_with_auth``: credential -> foundation.redis_scripts.PendingRead, a read the view
    needs (``/me``: its credential's live sockets), carried by that same round trip; its value
    is ``request.read_with_auth``. This module carries it without knowing what it reads; its
    value is taken only for a request that is let through (a refused one reveals nothing)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        bucket = client_ip.rate_key(client_ip.from_request(request))
        # Rejections return their response instead of raising ApiError: under ASGI an exception
        # out of a sync view costs an extra thread hop (process_exception), and these are the
        # responses a flood of bad tokens is made of.
        if (wait := ratelimits.known_lockout(bucket)) is not None:
            return _locked_out(wait)
        raw = bearer_from_header(request.META.get("HTTP_AUTHORIZATION"))
        try:
            if raw is None:
                raise AuthenticationFailed()
            if len(raw) > MAX_CREDENTIAL_LENGTH:
                raise MalformedCredential()
            credential = verify_bearer(raw)
        except InactiveUser as exc:
            if (refused := ratelimits.authenticated(bucket)) is not None:
                return _locked_out(refused[1])
            metrics.authentication_refused("http", exc)
            return error_response(403, "This account is disabled.")
        except AuthenticationFailed as exc:
            if (wait := ratelimits.auth_failed(bucket)) is not None:
                return _locked_out(wait)
            metrics.authentication_refused("http", exc, reason="missing" if raw is None else None)
            return error_response(401, "A valid bearer token is required.")
        except UNAVAILABLE_ERRORS:
            metrics.authentication("http", "unavailable")
            raise
        limit = (user_limit, f"user:{credential.user.pk}") if user_limit else None
        along = read_with_auth(credential) if read_with_auth else None
        refused = ratelimits.authenticated(bucket, limit, along=along)
        if refused is not None and refused[0] == "auth-failures":
            return _locked_out(refused[1])
        metrics.authentication("http", "accepted")
        if refused is not None:
            name, wait = refused
            metrics.rate_limited(name)
            return error_response(429, f"Too many requests; retry in {wait} s.", retry_after=wait)
        request.user = credential.user
        request.credential = credential
        if along is not None:
            request.read_with_auth = along.value()
        return view(request, *args, **kwargs)

    return wrapper


def _locked_out(wait: int):
    metrics.rate_limited("auth-failures")
    metrics.authentication_refused("http", reason="rate_limited")
    return error_response(429, LOCKED_OUT, retry_after=wait)
