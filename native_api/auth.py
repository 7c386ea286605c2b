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


def bearer_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        bucket = client_ip.rate_key(client_ip.from_request(request))
        retry_after = ratelimits.hit("auth-failures", bucket, increment=False)
        # Rejections return their response instead of raising ApiError: under ASGI an exception
        # out of a sync view costs an extra thread hop (process_exception), and these are the
        # responses a flood of bad tokens is made of.
        if retry_after is not None:
            metrics.rate_limited("auth-failures")
            metrics.authentication_refused("http", reason="rate_limited")
            return error_response(
                429, "Too many failed authentications from your address.", retry_after=retry_after
            )
        raw = bearer_from_header(request.META.get("HTTP_AUTHORIZATION"))
        try:
            if raw is None:
                raise AuthenticationFailed()
            if len(raw) > MAX_CREDENTIAL_LENGTH:
                raise MalformedCredential()
            credential = verify_bearer(raw)
        except InactiveUser as exc:
            metrics.authentication_refused("http", exc)
            return error_response(403, "This account is disabled.")
        except AuthenticationFailed as exc:
            metrics.authentication_refused("http", exc, reason="missing" if raw is None else None)
            ratelimits.hit("auth-failures", bucket)
            return error_response(401, "A valid bearer token is required.")
        except UNAVAILABLE_ERRORS:
            metrics.authentication("http", "unavailable")
            raise
        metrics.authentication("http", "accepted")
        request.user = credential.user
        request.credential = credential
        return view(request, *args, **kwargs)

    return wrapper
