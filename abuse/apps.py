from django.apps import AppConfig


class AbuseConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "abuse"
    verbose_name = "Abuse protection"

    def ready(self) -> None:
        from abuse import signals

        signals.connect()
