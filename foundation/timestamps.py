"""The one timestamp shape of API.md: RFC 3339 in UTC, exactly three fractional digits, ``Z``.

Every timestamp in every response, frame and command output goes through ``isoformat``, so a
client needs one parser configuration (Swift's ``ISO8601DateFormatter`` with
``.withFractionalSeconds``, ``datetime.fromisoformat``, ``Date.parse``) for all of them.
"""

from datetime import UTC, datetime

# What ``isoformat`` produces; the declarations (native_api/schemas/fields.py) publish it.
PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$"
EXAMPLE = "2026-11-22T18:42:31.120Z"


def isoformat(value: datetime | None) -> str | None:
    """``2026-11-22T18:42:31.120Z``: milliseconds truncated, never rounded up into the next second."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
