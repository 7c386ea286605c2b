"""NativeClient: the HTTP half of API.md (login, sessions, rooms, history, send, tickets).

Synchronous on purpose (httpx.Client): a CLI or a script makes one call at a time. The live
stream is async and lives in native_client.stream; ``NativeClient.tail`` hands over to it.
"""

import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from urllib.parse import quote

import httpx

from native_client import signing
from native_client.errors import ApiError, NetworkError, NotLoggedIn

USER_AGENT = "native-client/1.0"
DEFAULT_TIMEOUT = 10.0


def normalize_server(url: str) -> str:
    """``http://host:port`` without a trailing slash; a bare ``host:port`` means http."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    return url


def error_from_response(response: httpx.Response) -> ApiError:
    """The contract's ``{"error", "detail"}`` body as an ApiError (anything else: a generic one)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code, detail = body["error"], str(body.get("detail") or body["error"])
    else:
        code, detail = "http_error", f"The server answered HTTP {response.status_code}."
    retry_after = response.headers.get("Retry-After", "")
    return ApiError(
        response.status_code, code, detail, retry_after=int(retry_after) if retry_after.isdigit() else None
    )


class NativeClient:
    """One server, one (optional) token. ``with NativeClient(url) as client: ...`` closes it."""

    def __init__(
        self,
        server_url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ):
        self.server_url = normalize_server(server_url)
        self.token = token
        self.timeout = timeout
        self._http = httpx.Client(
            base_url=f"{self.server_url}/api/native/",
            timeout=timeout,
            headers={"User-Agent": USER_AGENT},
            transport=transport,
        )

    def __repr__(self) -> str:  # never the token
        return f"NativeClient({self.server_url!r}, logged_in={self.token is not None})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # --- login and sessions -------------------------------------------------------------------

    def health(self) -> dict:
        return self._call("GET", "health", auth=False, ok=(200, 503))

    def login(self, key_path: str | os.PathLike, device_name: str | None = None) -> dict:
        """Sign a fresh challenge with ``key_path`` (file or agent); keep and return the new token.

        Returns the server's 201 body: ``token``, ``token_id``, ``expires_at``, ``user``.
        """
        public_key = signing.public_key_line(key_path)
        challenge = self._call("GET", "challenge", auth=False)
        signature = signing.sign(challenge["nonce"].encode("utf-8"), challenge["namespace"], key_path)
        body = {"public_key": public_key, "nonce": challenge["nonce"], "signature": signature}
        if device_name:
            body["device_name"] = device_name
        issued = self._call("POST", "token", json=body, auth=False)
        self.token = issued["token"]
        return issued

    def me(self) -> dict:
        return self._call("GET", "me")

    def logout(self) -> None:
        """Revoke this client's token on the server (its tickets and sockets die with it)."""
        self._call("DELETE", "logout")
        self.token = None

    def sessions(self) -> list[dict]:
        """The caller's live tokens, newest first; the one in use has ``current: true``."""
        return self._call("GET", "tokens")["tokens"]

    def revoke_session(self, token_id: str) -> None:
        self._call("DELETE", f"tokens/{_segment(token_id)}")

    def logout_everywhere(self) -> None:
        self._call("DELETE", "tokens")
        self.token = None

    def ws_ticket(self) -> dict:
        """A single-use websocket ticket: ``{"ticket", "expires_in", "url"}``."""
        return self._call("POST", "ws-ticket")

    # --- rooms ----------------------------------------------------------------------------

    def rooms(self) -> list[dict]:
        return self._call("GET", "rooms")["rooms"]

    def history(
        self, room: str, limit: int | None = None, before: int | None = None, after: int | None = None
    ) -> dict:
        """``{"room", "messages" (ascending ids), "has_more"}``."""
        params = {k: v for k, v in (("limit", limit), ("before", before), ("after", after)) if v is not None}
        return self._call("GET", f"rooms/{_segment(room)}/history", params=params)

    def send(
        self,
        room: str,
        body: str,
        client_id: str | None = None,
        target_user_ids: Sequence[int] | None = None,
    ) -> dict:
        """Post a message and return it. Safe to retry: a repeated client_id returns the original.

        One network failure is retried with the same client_id, so a post whose answer was lost
        is neither duplicated nor reported as failed.
        """
        payload = {"body": body, "client_id": client_id or str(uuid.uuid4())}
        if target_user_ids:
            payload["target_user_ids"] = list(target_user_ids)
        path = f"rooms/{_segment(room)}/messages"
        try:
            return self._call("POST", path, json=payload, ok=(200, 201))
        except NetworkError:
            return self._call("POST", path, json=payload, ok=(200, 201))

    # --- live stream ------------------------------------------------------------------------

    def tail(
        self,
        room: str,
        after: int | None = None,
        *,
        servers: str | Sequence[str] | Callable[[], str] | None = None,
        **options,
    ) -> AsyncIterator[dict]:
        """Live messages of ``room`` (async iterator), reconnecting and resuming after ``after``.

        ``servers`` (default: this client's server) may list several URLs to fail over between,
        or be a callable returning the URL to try next. See native_client.stream.Tail.
        """
        from native_client.stream import Tail

        if self.token is None:
            raise NotLoggedIn("Log in before tailing a room.")
        return Tail(self.token, servers or self.server_url, room, after, **options).messages()

    # --- plumbing ---------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, auth: bool = True, ok=(200, 201, 204), **kwargs):
        headers = {}
        if auth:
            if self.token is None:
                raise NotLoggedIn("Log in first.")
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise NetworkError(f"Cannot reach {self.server_url}: {_describe(exc)}") from None
        if response.status_code not in ok:
            raise error_from_response(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                response.status_code, "bad_response", "The server sent a non-JSON answer."
            ) from None


def _segment(value: str) -> str:
    """A path segment, percent-encoded so that a slug or id can never change the path."""
    return quote(str(value), safe="")


def _describe(exc: httpx.TransportError) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
