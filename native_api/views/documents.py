"""GET openapi.json and asyncapi.json: the machine-readable documents, generated at first use."""

from native_api.endpoints import Operation, endpoint, json_response
from native_api.schemas import asyncapi, openapi

_ANY_OBJECT = {"type": "object"}


@endpoint(
    get=Operation(
        "getOpenApiDocument",
        "documents",
        "This OpenAPI 3.1 document.",
        responses={200: (_ANY_OBJECT, "The OpenAPI 3.1 document of the REST API.")},
    )
)
def openapi_json(request):
    return json_response(openapi.document())


@endpoint(
    get=Operation(
        "getAsyncApiDocument",
        "documents",
        "The AsyncAPI 3.0 document of the websocket protocol.",
        responses={200: (_ANY_OBJECT, "Frames, replies and close codes of /api/ws/native.")},
    )
)
def asyncapi_json(request):
    return json_response(asyncapi.document(request.get_host(), secure=request.is_secure()))
