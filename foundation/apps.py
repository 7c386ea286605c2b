from django.apps import AppConfig


class FoundationConfig(AppConfig):
    name = "foundation"
    verbose_name = "Change log"

    def ready(self):
        from django.db.backends.signals import connection_created

        from foundation import db_deadline

        connection_created.connect(db_deadline.install, dispatch_uid="foundation.db_deadline")
