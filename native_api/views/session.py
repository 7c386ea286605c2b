"""Login and token management: challenge, token, me, logout, tokens, ws-ticket."""

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from native_api import client_ip, ratelimits
from native_api.auth import bearer_required
from native_api.errors import ApiError
from native_api.requests import json_object, optional_str, required_str
from native_api.serializers import service_token_info, token_info, user_dict
from native_api.timestamps import isoformat
from tokens import login
from tokens.exceptions import LoginRejected
from tokens.models import NativeToken
from tokens.revocation import revoke_credential, revoke_native_tokens
from tokens.ssh_signatures import SshKeyError, parse_public_key
from tokens.tickets import mint_ticket

MAX_SIGNATURE = 16 * 1024
MAX_PUBLIC_KEY = 16 * 1024


@csrf_exempt
@require_http_methods(["GET"])
def challenge(request):
    ratelimits.enforce("challenge", client_ip.rate_key(client_ip.from_request(request)))
    ratelimits.admit_nonce()
    nonce = login.issue_challenge()
    return JsonResponse(
        {
            "nonce": nonce,
            "namespace": settings.NATIVE_SIGNATURE_NAMESPACE,
            "expires_in": settings.NATIVE_CHALLENGE_TTL,
        },
        headers={"Cache-Control": "no-store"},
    )


@csrf_exempt
@require_http_methods(["POST"])
def token(request):
    ip = client_ip.from_request(request)
    ratelimits.enforce("token-ip", client_ip.rate_key(ip))
    data = json_object(request)
    nonce = data.get("nonce")
    # The nonce dies with its first attempt, whatever the rest of the body says.
    nonce_ok = isinstance(nonce, str) and login.consume_nonce(nonce)
    public_key = required_str(data, "public_key", MAX_PUBLIC_KEY)
    signature = required_str(data, "signature", MAX_SIGNATURE)
    fingerprint = optional_str(data, "public_key_fingerprint", 100)
    device_name = optional_str(data, "device_name", 100) or ""
    if not isinstance(nonce, str) or not nonce:
        raise ApiError(400, "nonce is required (a non-empty string).")
    try:
        key = parse_public_key(public_key)
    except SshKeyError as exc:
        raise ApiError(400, f"public_key: {exc}") from None
    ratelimits.enforce("token-key", key.fingerprint)
    try:
        if not nonce_ok:
            raise LoginRejected("unknown, expired or used nonce")
        issued = login.exchange(
            login.LoginRequest(
                public_key=key,
                nonce=nonce,
                signature=signature,
                public_key_fingerprint=fingerprint,
                device_name=device_name,
                user_agent=request.META.get("HTTP_USER_AGENT", ""),
                client_ip=ip,
            )
        )
    except LoginRejected as exc:
        user_login_failed.send(
            sender=__name__, credentials={"public_key_fingerprint": fingerprint}, request=request
        )
        raise ApiError(401, f"Login failed: {exc}.") from None
    user_logged_in.send(sender=issued.token.user.__class__, request=request, user=issued.token.user)
    return JsonResponse(
        {
            "token": issued.raw,
            "token_id": issued.token.public_id,
            "expires_at": isoformat(issued.token.expires_at),
            "user": user_dict(issued.token.user),
        },
        status=201,
        headers={"Cache-Control": "no-store"},  # the token is shown once: no cache may keep it
    )


@csrf_exempt
@require_http_methods(["GET"])
@bearer_required
def me(request):
    credential = request.credential
    info = (
        token_info(credential.native_token, credential.id)
        if credential.native_token
        else service_token_info(credential)
    )
    return JsonResponse({"user": user_dict(request.user), "token": info})


@csrf_exempt
@require_http_methods(["GET", "POST"])
@bearer_required
def ws_ticket(request):
    ratelimits.enforce("ws-ticket", f"user:{request.user.pk}")
    ratelimits.enforce_ticket_cap(request.user)
    ticket = mint_ticket(request.credential)
    return JsonResponse(
        {
            "ticket": ticket,
            "expires_in": settings.NATIVE_TICKET_TTL,
            "url": f"/api/ws/native?ticket={ticket}",
        },
        status=201 if request.method == "POST" else 200,
        headers={"Cache-Control": "no-store"},
    )


@csrf_exempt
@require_http_methods(["DELETE"])
@bearer_required
def logout(request):
    revoke_credential(request.credential, by=request.user, reason="logout")
    return HttpResponse(status=204)


@csrf_exempt
@require_http_methods(["GET", "DELETE"])
@bearer_required
def tokens(request):
    own = NativeToken.objects.filter(user=request.user)
    if request.method == "DELETE":
        revoke_native_tokens(own, by=request.user, reason="logout everywhere")
        return HttpResponse(status=204)
    return JsonResponse(
        {"tokens": [token_info(t, request.credential.id) for t in own.live().order_by("-created_at", "-id")]}
    )


@csrf_exempt
@require_http_methods(["DELETE"])
@bearer_required
def token_detail(request, token_id):
    own_live = NativeToken.objects.live().filter(user=request.user, public_id=token_id)
    if not revoke_native_tokens(own_live, by=request.user, reason="revoked by owner"):
        raise ApiError(404, "No live token of yours has this id.")
    return HttpResponse(status=204)
