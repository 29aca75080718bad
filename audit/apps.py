from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Security audit"

    def ready(self) -> None:
        from audit import signals

        signals.connect()
