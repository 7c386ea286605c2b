"""Django's header middleware, run inline under ASGI: the API's chain (NATIVE_API_MIDDLEWARE).

Django's ``MiddlewareMixin`` is async-capable, but under ASGI it calls ``process_request`` and
``process_response`` through ``sync_to_async``: two thread hops per middleware per request.
These three do no I/O (they read settings and the request, set headers, or answer a redirect),
so their hooks can run on the event loop directly. Same classes, same behaviour, no hops; the
admin keeps Django's originals in ``MIDDLEWARE`` (which ``check --deploy`` looks for by name).
"""

from django.middleware import clickjacking, common, security


class InlineHooksMixin:
    """A MiddlewareMixin whose hooks run inline in async mode too: only for hooks without I/O."""

    async def __acall__(self, request):
        response = self.process_request(request) if hasattr(self, "process_request") else None
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class SecurityMiddleware(InlineHooksMixin, security.SecurityMiddleware):
    """HSTS, nosniff, referrer and opener policies, the SSL redirect."""


class CommonMiddleware(InlineHooksMixin, common.CommonMiddleware):
    """The ALLOWED_HOSTS check (request.get_host), DISALLOWED_USER_AGENTS, APPEND_SLASH."""


class XFrameOptionsMiddleware(InlineHooksMixin, clickjacking.XFrameOptionsMiddleware):
    """X-Frame-Options: DENY."""
