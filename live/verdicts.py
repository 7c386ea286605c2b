"""The closes the engine decides, as (code, reason word) of API.md's table.

The engine does not know the wire's declarations (native_api.schemas.frames.CloseCode names
every code of the contract); tests/test_architecture.py checks that the two agree.
"""

REVOKED = (4401, "revoked")
INACTIVE = (4403, "inactive")
RESTART = (1012, "restart")
UNAVAILABLE = (1013, "unavailable")
