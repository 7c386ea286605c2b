"""System checks for settings that would make the credential system unsafe or unusable."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


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


@register(Tags.admin)
def check_admin_secrets(app_configs, site=None, **kwargs):
    """Every registered admin refuses lookups that reach a stored digest or hash, and none of
    its options searches, sorts, filters or shows one (tokens.admin_guard)."""
    from django.contrib import admin

    from tokens.admin_guard import SecretLookupGuard, exposed_secrets

    problems = []
    for model, model_admin in (site or admin.site)._registry.items():
        name = f"{type(model_admin).__name__} ({model._meta.label})"
        for option, entry in exposed_secrets(model_admin):
            problems.append(
                Error(
                    f"{name}.{option} names {entry!r}, a stored digest or hash.",
                    hint="Admin must not show, search, sort or filter by a secret: remove it.",
                    obj=model_admin,
                    id="tokens.E002",
                )
            )
        if not isinstance(model_admin, SecretLookupGuard):
            problems.append(
                Error(
                    f"{name} does not refuse lookups on stored digests and hashes.",
                    hint="Mix in tokens.admin_guard.SecretLookupGuard (ScalableAdmin has it).",
                    obj=model_admin,
                    id="tokens.E003",
                )
            )
    return problems
