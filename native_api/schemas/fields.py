"""Field types shared by the HTTP and websocket declarations: ids, slugs, message text, timestamps.

The limits are the contract's (API.md); rooms.posting enforces the same ones for callers that
do not come through a declaration (tests/test_schemas_http.py keeps the two equal).
"""

from typing import Annotated

from msgspec import Meta

from foundation.timestamps import EXAMPLE, PATTERN

MAX_ID = 2**63 - 1  # ids are 64-bit; a larger number is refused, never sent to the database
MAX_BODY = 4000
MAX_CLIENT_ID = 64
MAX_TARGETS = 100
MAX_REF = 64
MAX_DEVICE_NAME = 100

# ``extra["must_be"]`` overrides the generated wording of an error sentence ("room must be a
# room slug.") where the constraints alone would not tell a client what is expected.
Id = Annotated[int, Meta(ge=1, le=MAX_ID)]
MessageId = Annotated[int, Meta(ge=1, le=MAX_ID, description="A message id; ids grow in commit order.")]
Cursor = Annotated[
    int,
    Meta(
        ge=0,
        le=MAX_ID,
        description="A message id (0: from the start).",
        extra={"must_be": "a non-negative integer message id"},
    ),
]
RoomSlug = Annotated[
    str,
    Meta(min_length=1, description="A room's slug, e.g. `general`.", extra={"must_be": "a room slug"}),
]
Body = Annotated[str, Meta(min_length=1, max_length=MAX_BODY, description="The message text.")]
ClientId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_CLIENT_ID,
        description="The sender's idempotency key: a repeat returns the original message.",
    ),
]
TargetUserIds = Annotated[
    list[Id],
    Meta(
        max_length=MAX_TARGETS,
        description="When non-empty, only the sender and these members see the message.",
        extra={"must_be": f"a list of at most {MAX_TARGETS} positive integer user ids"},
    ),
]
Ref = Annotated[
    str,
    Meta(max_length=MAX_REF, description="Any client frame may carry a ref; its direct reply echoes it."),
]
Timestamp = Annotated[
    str,
    Meta(
        pattern=PATTERN,
        description="RFC 3339 in UTC with exactly three fractional digits and Z.",
        examples=[EXAMPLE],
        extra_json_schema={"format": "date-time"},
    ),
]
