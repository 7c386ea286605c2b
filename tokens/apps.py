from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "tokens"
    verbose_name = "Credentials"

    def ready(self):
        from tokens import checks, key_history, signals  # noqa: F401  (registers checks and receivers)
