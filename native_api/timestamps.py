from datetime import UTC, datetime


def isoformat(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, as API.md shows (2026-11-22T18:42:31Z)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
