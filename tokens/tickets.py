"""Websocket tickets: single-use, 30-second credentials minted by an authenticated client."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from tokens import crypto
from tokens.models import WsTicket
from tokens.verifier import Credential


def mint_ticket(credential: Credential) -> str:
    raw = crypto.mint_secret(crypto.TICKET_PREFIX)
    WsTicket.objects.create(
        digest=crypto.digest(raw),
        user=credential.user,
        native_token=credential.native_token,
        service_jti="" if credential.native_token else credential.id,
        credential_expires_at=credential.expires_at,
        credential_issued_at=credential.issued_at if credential.native_token is None else None,
        expires_at=timezone.now() + timedelta(seconds=settings.NATIVE_TICKET_TTL),
    )
    return raw
