"""Where the CLI keeps its tokens: one private file per server under the user's config dir.

Files are created with mode 0600 in a 0700 directory, by os.open with the mode, then renamed
into place, so there is never a moment when a token sits in a file others may read (a chmod
after writing would leave such a moment). Nothing here ever prints a token.
"""

import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

ENV_DIR = "NATIVE_CLIENT_CONFIG_DIR"
SETTINGS_FILE = "settings.json"


def default_config_dir() -> Path:
    """$NATIVE_CLIENT_CONFIG_DIR, else $XDG_CONFIG_HOME/native-client, else ~/.config/native-client."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base).expanduser() / "native-client"


@dataclass(frozen=True)
class StoredSession:
    server: str
    token: str
    token_id: str
    username: str
    user_id: int
    expires_at: str

    def __repr__(self) -> str:  # never the token
        return f"StoredSession({self.server!r}, {self.username!r}, token_id={self.token_id!r})"


class TokenStore:
    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = Path(directory).expanduser() if directory else default_config_dir()

    def path_for(self, server: str) -> Path:
        """``session-<host_port>-<hash>.json``: readable, and distinct for every server URL."""
        readable = re.sub(r"[^A-Za-z0-9.-]+", "_", server.split("://", 1)[-1]).strip("_")[:60]
        digest = hashlib.sha256(server.encode()).hexdigest()[:10]
        return self.directory / f"session-{readable}-{digest}.json"

    def save(self, server: str, issued: dict) -> Path:
        """Keep the 201 body of POST /token for ``server`` and make it the default server."""
        path = self.path_for(server)
        self._write(
            path,
            {
                "server": server,
                "token": issued["token"],
                "token_id": issued["token_id"],
                "expires_at": issued["expires_at"],
                "user": {"id": issued["user"]["id"], "username": issued["user"]["username"]},
            },
        )
        self.set_last_server(server)
        return path

    def load(self, server: str) -> StoredSession | None:
        data = self._read(self.path_for(server))
        if not data or not isinstance(data.get("token"), str):
            return None
        user = data.get("user") or {}
        return StoredSession(
            server=server,
            token=data["token"],
            token_id=str(data.get("token_id", "")),
            username=str(user.get("username", "")),
            user_id=user.get("id", 0),
            expires_at=str(data.get("expires_at", "")),
        )

    def delete(self, server: str) -> bool:
        try:
            self.path_for(server).unlink()
        except FileNotFoundError:
            return False
        return True

    def last_server(self) -> str | None:
        server = (self._read(self.directory / SETTINGS_FILE) or {}).get("server")
        return server if isinstance(server, str) and server else None

    def set_last_server(self, server: str) -> None:
        self._write(self.directory / SETTINGS_FILE, {"server": server})

    # --- files ------------------------------------------------------------------------------

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # An existing directory may be wider (made by hand, or by an older version): tighten it.
        if self.directory.stat().st_mode & 0o077:
            self.directory.chmod(0o700)

    def _write(self, path: Path, data: dict) -> None:
        self._ensure_directory()
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(temporary, flags, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=2)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise

    @staticmethod
    def _read(path: Path) -> dict | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None
