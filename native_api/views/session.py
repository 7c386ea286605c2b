"""Login and token management: challenge, token, me, logout, tokens, ws-ticket."""

import msgspec
from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed

from foundation import metrics
from foundation.timestamps import isoformat
from live import presence
from native_api import client_ip, ratelimits
from native_api.auth import bearer_from_header
from native_api.endpoints import Operation, endpoint, json_response, no_content, read_body
from native_api.errors import ApiError
from native_api.schemas.http import (
    Challenge,
    IssuedToken,
    LoginRequest,
    Me,
    TokenList,
    WsTicket,
)
from native_api.serializers import credential_info, native_token_info, user_struct
from tokens import login, service_tokens, tickets
from tokens.exceptions import AuthenticationFailed, LoginRejected
from tokens.models import NativeToken
from tokens.revocation import revoke_credential, revoke_native_tokens
from tokens.ssh_certificates import Certificate, CertificateError, is_certificate_line, parse_certificate
from tokens.ssh_signatures import SshKeyError, parse_public_key

NO_STORE = {"Cache-Control": "no-store"}  # for answers that carry a secret: no cache may keep them


@endpoint(
    get=Operation(
        "getChallenge",
        "auth",
        "A single-use login nonce.",
        responses={200: (Challenge, "Sign the nonce and send it to createToken within expires_in seconds.")},
        errors={429: "Too many challenges from this address.", 503: "Login is unavailable."},
    )
)
def challenge(request):
    ratelimits.enforce("challenge", client_ip.rate_key(client_ip.from_request(request)))
    nonce = login.issue_challenge()  # stateless: nothing is stored, nothing shared is used up
    body = Challenge(
        nonce=nonce, namespace=settings.NATIVE_SIGNATURE_NAMESPACE, expires_in=settings.NATIVE_CHALLENGE_TTL
    )
    return json_response(body, headers=NO_STORE)


class _NamedNonce(msgspec.Struct):
    nonce: object = None


def _consume_named_nonce(raw: bytes) -> None:
    """The nonce dies with the first attempt that names it, even one refused for another field."""
    try:
        nonce = msgspec.json.decode(raw, type=_NamedNonce).nonce
    except (msgspec.DecodeError, ValueError, RecursionError):
        return
    if isinstance(nonce, str) and nonce:
        login.consume_nonce(nonce)


@endpoint(
    post=Operation(
        "createToken",
        "auth",
        "Exchange an SSH signature over the nonce for a bearer token.",
        body=LoginRequest,
        responses={201: (IssuedToken, "Logged in; the token is shown this once.")},
        errors={
            400: "A public key or certificate that does not parse or is not supported, or a certificate "
            "whose CA signature does not verify.",
            401: "An unknown, expired or used nonce, a bad signature, a wrong namespace, a fingerprint "
            "that does not match, an unknown or revoked key, a disabled account, a security-key "
            "signature without presence (or verification) or whose counter did not go up, or a "
            "certificate that is not valid now, names no single active user, comes from an untrusted "
            "CA, carries an unsupported critical option or a source-address that excludes the client.",
            429: "Too many logins from this address or with this key.",
            503: "Login is unavailable.",
        },
    )
)
def token(request):
    ip = client_ip.from_request(request)
    ratelimits.enforce("token-ip", client_ip.rate_key(ip))
    try:
        body = read_body(request, LoginRequest)
    except ApiError as refused:
        if refused.status == 400:
            _consume_named_nonce(request.body)
        raise
    nonce_ok = login.consume_nonce(body.nonce)
    key = _signer(body.public_key)
    ratelimits.enforce("token-key", key.fingerprint)
    fingerprint = body.public_key_fingerprint
    try:
        if not nonce_ok:
            raise LoginRejected("unknown, expired or used nonce")
        issued = login.exchange(
            login.LoginRequest(
                public_key=key,
                nonce=body.nonce,
                signature=body.signature,
                public_key_fingerprint=fingerprint,
                device_name=body.device_name or "",
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
                client_ip=ip,
            )
        )
    except LoginRejected as exc:
        metrics.login(_method(key), accepted=False)
        user_login_failed.send(
            sender=__name__, credentials={"public_key_fingerprint": fingerprint}, request=request
        )
        raise ApiError(401, f"Login failed: {exc}.") from None
    metrics.login(_method(key), accepted=True)
    user = issued.token.user
    user_logged_in.send(sender=user.__class__, request=request, user=user)
    answer = IssuedToken(
        token=issued.raw,
        token_id=issued.token.public_id,
        expires_at=isoformat(issued.token.expires_at),
        user=user_struct(user),
    )
    return json_response(answer, status=201, headers=NO_STORE)


def _signer(text: str):
    """The public key, or the certificate, that the login says signed the nonce."""
    try:
        if is_certificate_line(text):
            return parse_certificate(text)
        return parse_public_key(text)
    except (SshKeyError, CertificateError) as exc:
        raise ApiError(400, f"public_key: {exc}") from None


def _method(signer) -> str:
    if isinstance(signer, Certificate):
        return "certificate"
    return "security_key" if signer.is_security_key else "key"


def _service_token_name(request) -> str:
    """The --name label of the service token this request was authenticated with.

    The verifier's Credential does not carry it; the claims are re-read from the header, which
    only decodes what verify_bearer has just checked."""
    try:
        raw = bearer_from_header(request.META.get("HTTP_AUTHORIZATION")) or ""
        return service_tokens.read(raw).name
    except AuthenticationFailed:  # expired in the last microseconds: no label is better than none
        return ""


def _live_sockets(credential):
    return presence.count_read(credential.id)


@endpoint(
    get=Operation(
        "getMe",
        "auth",
        "The caller, and the credential this request was made with.",
        auth=True,
        # The live-socket count rides in authentication's one round trip to Redis.
        read_with_auth=_live_sockets,
        responses={200: (Me, "The user and the presented credential's TokenInfo.")},
    )
)
def me(request):
    credential = request.credential
    name = _service_token_name(request) if credential.native_token is None else ""
    info = credential_info(credential, name=name, live_sockets=request.read_with_auth)
    return json_response(Me(user=user_struct(request.user), token=info))


_TICKET_ERRORS = {429: "Too many tickets for this user this minute."}


@endpoint(
    post=Operation(
        "createWsTicket",
        "auth",
        "A single-use websocket ticket, bound to the presented credential.",
        auth=True,
        user_limit="ws-ticket",
        responses={201: (WsTicket, "Open the websocket at url within expires_in seconds.")},
        errors=_TICKET_ERRORS,
    ),
    get=Operation(
        "getWsTicket",
        "auth",
        "The same as createWsTicket, for clients that cannot POST.",
        auth=True,
        user_limit="ws-ticket",
        responses={200: (WsTicket, "Open the websocket at url within expires_in seconds.")},
        errors=_TICKET_ERRORS,
    ),
)
def ws_ticket(request):
    # The per-user limit was counted with authentication (user_limit above): one round trip.
    ticket = tickets.mint(request.credential)
    answer = WsTicket(
        ticket=ticket, expires_in=settings.NATIVE_TICKET_TTL, url=f"/api/ws/native?ticket={ticket}"
    )
    return json_response(answer, status=201 if request.method == "POST" else 200, headers=NO_STORE)


@endpoint(
    delete=Operation(
        "logout",
        "auth",
        "Revoke the presented credential (native or service), its tickets, and close its websockets.",
        auth=True,
        responses={204: (None, "Logged out.")},
    )
)
def logout(request):
    revoke_credential(request.credential, by=request.user, reason="logout")
    return no_content()


@endpoint(
    get=Operation(
        "listTokens",
        "tokens",
        "The caller's live native tokens, newest first.",
        auth=True,
        responses={200: (TokenList, "The caller's sessions; current marks the one in use.")},
    ),
    delete=Operation(
        "revokeAllTokens",
        "tokens",
        "Revoke all of the caller's native tokens (log out everywhere).",
        auth=True,
        responses={204: (None, "Every native token of the caller is revoked.")},
    ),
)
def tokens(request):
    own = NativeToken.objects.filter(user=request.user)
    if request.method == "DELETE":
        revoke_native_tokens(own, by=request.user, reason="logout everywhere")
        return no_content()
    live = list(own.live().order_by("-created_at", "-id"))
    sockets = presence.counts_for_credentials([t.public_id for t in live])
    current = request.credential.id
    listed = [
        native_token_info(t, current_id=current, live_sockets=sockets.get(t.public_id, 0)) for t in live
    ]
    return json_response(TokenList(tokens=listed))


@endpoint(
    path={"token_id": str},
    delete=Operation(
        "revokeToken",
        "tokens",
        "Revoke one of the caller's live native tokens.",
        auth=True,
        responses={204: (None, "Revoked; its websockets are closed.")},
        errors={404: "Not one of the caller's live tokens."},
    ),
)
def token_detail(request, token_id):
    own_live = NativeToken.objects.live().filter(user=request.user, public_id=token_id)
    if not revoke_native_tokens(own_live, by=request.user, reason="revoked by owner"):
        raise ApiError(404, "No live token of yours has this id.")
    return no_content()
