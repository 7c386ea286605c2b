"""Which server the client talks to, and how it introduces itself: shared by the HTTP client
(native_client.api), the live stream (native_client.stream) and its reconnect rules."""

USER_AGENT = "native-client/1.0"


def normalize_server(url: str) -> str:
    """``http://host:port`` without a trailing slash; a bare ``host:port`` means http."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    return url
