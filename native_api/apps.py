from django.apps import AppConfig


class NativeApiConfig(AppConfig):
    name = "native_api"
    verbose_name = "Native API"

    def ready(self):
        from django.db.backends.signals import connection_created

        from config import db_deadline

        connection_created.connect(db_deadline.install, dispatch_uid="native_api.db_deadline")
