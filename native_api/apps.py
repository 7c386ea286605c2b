from django.apps import AppConfig


class NativeApiConfig(AppConfig):
    name = "native_api"
    verbose_name = "Native API"
