"""System checks for settings that would make the credential system unsafe or unusable."""

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def check_native_settings(app_configs, **kwargs):
    problems = []
    if settings.NATIVE_SERVICE_TOKEN_TTL > settings.NATIVE_SERVICE_TOKEN_MAX_TTL:
        problems.append(
            Error(
                "NATIVE_SERVICE_TOKEN_TTL is longer than NATIVE_SERVICE_TOKEN_MAX_TTL.",
                id="tokens.E001",
            )
        )
    if not settings.DEBUG and settings.NATIVE_AUTO_REGISTER:
        problems.append(
            Warning(
                "NATIVE_AUTO_REGISTER is on: anyone with an SSH key can create an account.",
                hint="Turn it off unless open sign-up is intended.",
                id="tokens.W001",
            )
        )
    if not settings.DEBUG and not settings.REDIS_URL:
        problems.append(
            Warning(
                "REDIS_URL is not set: rate limits, revocation and fan-out work in one process only.",
                hint="Set REDIS_URL before running more than one server process.",
                id="tokens.W002",
            )
        )
    return problems
