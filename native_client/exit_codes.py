"""The CLI's exit codes: one table for every subcommand, so that a script can tell refusals apart.

The same refusal gets the same code whichever command met it: ``history`` answered 403 and
``tail`` sent the ``forbidden`` error frame are both FORBIDDEN. The table in ``--help`` is
printed from EXIT_CODES, and a test holds docs/client.md to it.
"""

import textwrap
from enum import IntEnum

from native_client.errors import (
    ApiError,
    NetworkError,
    NotLoggedIn,
    ServersUnreachable,
    SigningError,
    StreamForbidden,
    StreamProtocolError,
    StreamUnauthorized,
    UnknownMembers,
    UsageProblem,
)


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_LOGGED_IN = 3
    FORBIDDEN = 4
    NOT_FOUND = 5
    INVALID = 6
    RATE_LIMITED = 7
    UNAVAILABLE = 8
    KEY = 9
    INTERRUPTED = 130


EXIT_CODES = {
    ExitCode.OK: "success",
    ExitCode.ERROR: "any other error (an unexpected answer, a server bug)",
    ExitCode.USAGE: "the command line is wrong (unknown option, missing argument, no server known)",
    ExitCode.NOT_LOGGED_IN: "not logged in, or the server refused the credential: no stored token, "
    "HTTP 401, tail closed with 4401, or login refused (unknown key, disabled account)",
    ExitCode.FORBIDDEN: "not allowed: not a member of the room, or no such room (HTTP 403, the "
    "forbidden error frame, removed from the room while tailing, close 4403)",
    ExitCode.NOT_FOUND: "not found (HTTP 404): a session id that is not one of your live sessions, "
    "or an endpoint this server does not have (members, on an older server)",
    ExitCode.INVALID: "the server refused the request as invalid (HTTP 400 or 413, close 4400 or 1009), "
    "or a --to username is not a member of the room",
    ExitCode.RATE_LIMITED: "rate limited (HTTP 429): wait the number of seconds the message gives",
    ExitCode.UNAVAILABLE: "the server cannot be reached, or is unavailable (HTTP 502, 503, 504)",
    ExitCode.KEY: "the SSH key cannot be used: no such file, ssh-keygen failed, the agent lacks the key",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}

_BY_STATUS = {
    401: ExitCode.NOT_LOGGED_IN,
    403: ExitCode.FORBIDDEN,
    404: ExitCode.NOT_FOUND,
    400: ExitCode.INVALID,
    405: ExitCode.INVALID,
    413: ExitCode.INVALID,
    429: ExitCode.RATE_LIMITED,
    502: ExitCode.UNAVAILABLE,
    503: ExitCode.UNAVAILABLE,
    504: ExitCode.UNAVAILABLE,
}

# Checked in order: the first class the error is an instance of decides.
_BY_CLASS = (
    (UsageProblem, ExitCode.USAGE),
    (NotLoggedIn, ExitCode.NOT_LOGGED_IN),
    (StreamUnauthorized, ExitCode.NOT_LOGGED_IN),
    (StreamForbidden, ExitCode.FORBIDDEN),
    (StreamProtocolError, ExitCode.INVALID),
    (UnknownMembers, ExitCode.INVALID),
    (ServersUnreachable, ExitCode.UNAVAILABLE),
    (NetworkError, ExitCode.UNAVAILABLE),
    (SigningError, ExitCode.KEY),
)


def exit_code_for(error: BaseException) -> ExitCode:
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(error, ApiError):
        return _BY_STATUS.get(error.status, ExitCode.ERROR)
    for cls, code in _BY_CLASS:
        if isinstance(error, cls):
            return code
    return ExitCode.ERROR


def table_text(width: int = 78) -> str:
    """The table as plain text, for the end of ``--help``."""
    lines = ["exit codes:"]
    for code, meaning in EXIT_CODES.items():
        lines += textwrap.wrap(meaning, width, initial_indent=f"  {int(code):<5}", subsequent_indent=" " * 7)
    return "\n".join(lines)
