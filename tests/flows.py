"""Client flows used by end-to-end tests: SSH-key login against a real server."""

import httpx

from tests.ssh_helpers import public_key_line, sign


def signed_login_body(base_url: str, key_path, *, device_name: str | None = None, namespace=None) -> dict:
    challenge = httpx.get(f"{base_url}/api/native/challenge").json()
    body = {
        "public_key": public_key_line(key_path),
        "nonce": challenge["nonce"],
        "signature": sign(key_path, challenge["nonce"].encode(), namespace or challenge["namespace"]),
    }
    if device_name is not None:
        body["device_name"] = device_name
    return body


def login(base_url: str, key_path, **kwargs) -> dict:
    """Log in with a real key; returns the 201 body (token, token_id, expires_at, user)."""
    response = httpx.post(
        f"{base_url}/api/native/token", json=signed_login_body(base_url, key_path, **kwargs)
    )
    assert response.status_code == 201, response.text
    return response.json()


def ticket(base_url: str, token: str) -> str:
    response = httpx.post(f"{base_url}/api/native/ws-ticket", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text
    return response.json()["ticket"]
