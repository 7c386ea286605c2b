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
from native_client.errors import (
    ApiError,
    LoginRefused,
    NetworkError,
    NotLoggedIn,
    UnknownMembers,
    error_from_response,
)
from native_client.server import USER_AGENT, normalize_server
from native_client.stream import Tail

DEFAULT_TIMEOUT = 10.0


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
        Raises LoginRefused when the server refuses the key or the signature; its message says
        what to do (an unknown key must be registered by an operator: logging in again will not help).
        """
        public_key = signing.public_key_line(key_path)
        challenge = self._call("GET", "challenge", auth=False)
        signature = signing.sign(challenge["nonce"].encode("utf-8"), challenge["namespace"], key_path)
        body = {"public_key": public_key, "nonce": challenge["nonce"], "signature": signature}
        if device_name:
            body["device_name"] = device_name
        try:
            issued = self._call("POST", "token", json=body, auth=False)
        except ApiError as exc:
            if exc.status != 401:
                raise
            raise LoginRefused(
                401,
                exc.code,
                login_refusal(exc.detail, public_key, signing.key_files(key_path)[1], self.server_url),
            ) from None
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

    def members(self, room: str) -> list[dict]:
        """``[{"id", "username"}, …]`` of the room, ordered by username (members only: 403 otherwise)."""
        try:
            return self._call("GET", f"rooms/{_segment(room)}/members")["members"]
        except ApiError as exc:
            if exc.status != 404:
                raise
            # The contract answers 403 for a room we may not see, so a 404 is the path itself.
            raise ApiError(
                404,
                exc.code,
                f"{self.server_url} has no room member list (an older server): use numeric user ids.",
            ) from None

    def user_ids(self, room: str, users: Sequence[str | int]) -> list[int]:
        """Numeric ids for ``users`` (ids, or usernames of ``room``'s members), in the given order.

        Digits-only values are ids and are passed through without asking the server; names are
        looked up with one call to members(). Unknown names raise UnknownMembers, naming them.
        """
        names = [str(u) for u in users if not str(u).isdigit()]
        by_name = {m["username"]: m["id"] for m in self.members(room)} if names else {}
        unknown = [name for name in names if name not in by_name]
        if unknown:
            listed = ", ".join(repr(name) for name in unknown)
            raise UnknownMembers(f"No member of room {room!r} is named {listed}.", unknown)
        return [int(u) if str(u).isdigit() else by_name[str(u)] for u in users]

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

        ``last=N`` (no ``after``) first delivers the room's N latest messages from history.

        ``servers`` (default: this client's server) may list several URLs to fail over between,
        or be a callable returning the URL to try next. See native_client.stream.Tail.
        """
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


def login_refusal(detail: str, public_key: str, public_path, server: str) -> str:
    """What to tell a user whose login the server refused (401 on POST /token).

    API.md gives every refusal the same ``unauthorized`` code; only the detail sentence tells
    them apart, so it is matched loosely and anything unrecognised gets every likely cause.
    """
    key = f"{signing.fingerprint(public_key)} ({public_path})"
    register = f"python manage.py add_ssh_key USERNAME {public_path}"
    text = detail.lower()
    if "unknown key" in text:
        return (
            f"Login refused: the key {key} is not registered on {server}. Logging in again will not "
            f"help: an operator must add the key first, with: {register}"
        )
    if "disabled" in text:
        return (
            f"Login refused: the account that owns the key {key} is disabled. Ask an operator to enable it."
        )
    if "nonce" in text:
        return (
            "Login refused: the login challenge expired or was already used before the signature "
            "arrived (it lives 60 seconds). Run login again."
        )
    if "signature" in text or "fingerprint" in text:
        return (
            f"Login refused: the signature does not match the key {key}. Check that the .pub file "
            f"belongs to the private key (ssh-keygen -y -f PRIVATE_KEY prints the right one)."
        )
    return (
        f"Login refused ({detail}). Most likely the key {key} is not registered (an operator adds it "
        f"with: {register}), or its account is disabled."
    )


def _segment(value: str) -> str:
    """A path segment, percent-encoded so that a slug or id can never change the path."""
    return quote(str(value), safe="")


def _describe(exc: httpx.TransportError) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
