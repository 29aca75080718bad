"""Log records as one JSON object per line, with their context as searchable fields.

Every record carries time, level, logger, message and request id; records
that pass `extra={...}` (the `[MONITOR]`, `[METRICS]` and `[ALERT]` records
carry `marker`, gift_id, task_id, attempt, receive_count …) get those as
fields too, so a log search can filter on `marker = "ALERT"` instead of
matching text. Callers pass only masked or non-personal values.
"""

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}

MONITOR = "MONITOR"
METRICS = "METRICS"
ALERT = "ALERT"


class JsonFormatter(_JsonFormatter):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(FIELDS, rename_fields=RENAMED, json_ensure_ascii=False, **kwargs)
