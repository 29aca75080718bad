import os
from pathlib import Path

# prometheus-client chooses multiprocess mode when it is imported, so the directory every web and
# worker process writes its metrics to is set here, before anything imports it (see gifting/instruments.py).
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(Path(__file__).resolve().parent.parent / "var" / "metrics"))
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

from config.celery import app as celery_app  # noqa: E402 - after the metrics directory is chosen

__all__ = ["celery_app"]
