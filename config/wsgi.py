import os

from django.core.wsgi import get_wsgi_application

from config.celery import register_tasks_for_tracing
from core.tracing import configure_tracing

WEB_SERVICE_NAME = "gift-a-voucher-web"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Before the application loads its middleware, to which tracing adds its own; a no-op unless the
# OTEL_* variables turn tracing on (core/tracing.py).
tracing = configure_tracing(WEB_SERVICE_NAME)
application = get_wsgi_application()
if tracing is not None:
    register_tasks_for_tracing()
