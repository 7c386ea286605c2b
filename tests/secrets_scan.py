"""Look for raw secrets where they must never be: the database's bytes and server logs."""

import shutil
import subprocess
from pathlib import Path

from django.db import connection


def database_bytes() -> bytes:
    """Everything the test database holds: the SQLite files, or a pg_dump of PostgreSQL."""
    conf = connection.settings_dict
    if conf["ENGINE"].endswith("sqlite3"):
        base = Path(conf["NAME"])
        return b"".join(p.read_bytes() for p in [base, Path(f"{base}-wal")] if p.exists())
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump is needed to scan a PostgreSQL database"
    result = subprocess.run(
        [
            pg_dump,
            "--data-only",
            "-h",
            conf.get("HOST") or "127.0.0.1",
            "-p",
            str(conf.get("PORT") or 5432),
            "-U",
            conf.get("USER") or "postgres",
            conf["NAME"],
        ],
        capture_output=True,
        check=True,
    )
    return result.stdout


def leaks(haystack: bytes | str, secrets: dict[str, str]) -> list[str]:
    """Names of the secrets (or their 8-character tails/heads past any prefix) found in ``haystack``."""
    text = haystack if isinstance(haystack, bytes) else haystack.encode()
    found = []
    for name, secret in secrets.items():
        body = secret.split("_", 1)[1] if secret[:4] in ("nat_", "nst_", "wst_") else secret
        if secret.encode() in text or body[:8].encode() in text or body[-8:].encode() in text:
            found.append(name)
    return found
