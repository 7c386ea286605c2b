"""JSON shapes of API.md for users and tokens."""

from native_api.timestamps import isoformat
from rooms.serializers import user_dict

__all__ = ["token_info", "user_dict"]


def token_info(token, current_id: str | None) -> dict:
    return {
        "id": token.public_id,
        "device_name": token.device_name,
        "user_agent": token.user_agent,
        "created_ip": token.created_ip,
        "created_at": isoformat(token.created_at),
        "last_used_at": isoformat(token.last_used_at),
        "expires_at": isoformat(token.expires_at),
        "current": token.public_id == current_id,
    }


def service_token_info(credential) -> dict:
    return {
        "id": credential.id,
        "kind": "service",
        "expires_at": isoformat(credential.expires_at),
        "current": True,
    }
