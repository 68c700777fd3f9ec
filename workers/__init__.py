"""The distributed farm: Celery app, tasks, producer and metrics. Tasks are thin: parse, call farm, record."""
