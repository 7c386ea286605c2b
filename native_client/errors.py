"""The client's exceptions: one class per way a call can fail, so callers (and the CLI) can react.

``ApiError`` carries the contract's JSON error body; the ``Stream*`` errors are the reasons a
``tail`` stops for good instead of reconnecting.
"""


class ClientError(Exception):
    """Base class of everything this package raises on purpose."""


class ApiError(ClientError):
    """The server answered with an error status; ``code`` and ``detail`` come from its JSON body."""

    def __init__(self, status: int, code: str, detail: str, *, retry_after: int | None = None):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after

    @property
    def auth_needed(self) -> bool:
        """True when logging in again is the fix (the credential is missing, bad or revoked)."""
        return self.status == 401

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.code!r}, {self.detail!r})"


class UsageProblem(ClientError):
    """The command line cannot be acted on (e.g. no server given and none remembered)."""


class LoginRefused(ApiError):
    """The server refused the login itself (401 on POST /token); the message says what to do."""


class UnknownMembers(ClientError):
    """Some usernames given as message targets are not members of the room."""

    def __init__(self, message: str, names: list[str]):
        super().__init__(message)
        self.names = names


class NetworkError(ClientError):
    """The server could not be reached, or the connection broke before an answer arrived."""


class SigningError(ClientError):
    """ssh-keygen could not sign the login challenge (no key, wrong passphrase, agent refused)."""


class NotLoggedIn(ClientError):
    """No token is stored for this server: log in first."""


class StreamStopped(ClientError):
    """A tail ended for good: reconnecting would not help. ``close_code`` is the websocket's, if any."""

    def __init__(self, message: str, *, close_code: int | None = None, reason: str = ""):
        super().__init__(message)
        self.close_code = close_code
        self.reason = reason


class StreamUnauthorized(StreamStopped):
    """The credential was refused or revoked (4401, or 401 minting a ticket): log in again."""


class StreamForbidden(StreamStopped):
    """Not allowed: the room is not ours (any more), or the server refused us (4403)."""


class StreamProtocolError(StreamStopped):
    """The server says this client broke the protocol (4400, 1009, invalid_request): a client bug."""


class ServersUnreachable(StreamStopped):
    """Every reconnect attempt failed, ``max_failures`` times in a row."""


def error_from_response(response) -> ApiError:
    """The contract's ``{"error", "detail"}`` body of an httpx response as an ApiError (anything
    else: a generic one)."""
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
