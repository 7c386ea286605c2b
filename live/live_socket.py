"""What the live-connection registry (live.presence) records of a socket, and the name of the
process that holds it."""

import os
import socket
from dataclasses import dataclass
from datetime import datetime

PROCESS = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class LiveSocket:
    connection_id: str
    credential_id: str  # a native token's public id, or a service token's jti
    user_id: int
    process: str  # "host:pid" of the server process that holds the socket
    client_ip: str | None
    opened_at: datetime
