"""The captcha service (`farm serve`): an HTTP API for platforms and the usability-study pages.

app.py the API and its errors; state.py what service processes share in Redis; study.py the
study pages; metrics.py its Prometheus metrics; settings.py what it runs with.
"""

from farm.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]


def create_app(settings: ServiceSettings, **kwargs):
    """farm.service.app.create_app, imported on use (FastAPI loads only for the service)."""
    from farm.service.app import create_app as create
    return create(settings, **kwargs)
