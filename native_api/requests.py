"""Kept for native_api.consumer until it decodes frames with native_api.schemas.frames.

Request bodies and queries are read by native_api.endpoints (read_body, read_query), frames by
native_api.schemas.frames.decode_client_frame; both word their refusals from the declarations.
"""

from native_api.schemas.decoding import UNSTORABLE_TEXT, has_unstorable_text

__all__ = ["UNSTORABLE_TEXT", "has_unstorable_text"]
