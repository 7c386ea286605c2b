"""Every wire shape of the native API, declared once as a msgspec ``Struct``.

The same declaration validates what clients send (``http.decode_body``, ``http.decode_query``,
``frames.decode_client_frame``), serializes what the server answers (``http.json_response``,
``frames.encode_frame``) and generates the machine-readable documents (``openapi``,
``asyncapi``). docs/benchmarks.md says why msgspec rather than pydantic.

This package imports no Django model, so ``rooms`` and ``tokens`` may depend on it.
"""
