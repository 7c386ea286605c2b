"""Users and credentials in their wire shape (native_api.schemas.http declares it)."""

from foundation.timestamps import isoformat
from native_api.schemas.http import TokenInfo, User


def user_struct(user) -> User:
    return User(id=user.pk, username=user.get_username())


def native_token_info(token, *, current_id: str | None, live_sockets: int) -> TokenInfo:
    return TokenInfo(
        id=token.public_id,
        kind="native",
        device_name=token.device_name,
        user_agent=token.user_agent,
        created_ip=token.created_ip,
        created_at=isoformat(token.created_at),
        last_used_at=isoformat(token.last_used_at),
        expires_at=isoformat(token.expires_at),
        current=token.public_id == current_id,
        live_sockets=live_sockets,
    )


def credential_info(credential, *, name: str, live_sockets: int) -> TokenInfo:
    """The credential a request was made with, native or service (``name``: a service token's label)."""
    if credential.native_token is not None:
        return native_token_info(credential.native_token, current_id=credential.id, live_sockets=live_sockets)
    return TokenInfo(
        id=credential.id,
        kind="service",
        device_name=name,
        user_agent=None,
        created_ip=None,
        created_at=isoformat(credential.issued_at),
        last_used_at=None,
        expires_at=isoformat(credential.expires_at),
        current=True,
        live_sockets=live_sockets,
    )
