from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "Credentials"

    def ready(self):
        from tokens import checks, signals  # noqa: F401  (registers checks and receivers)
