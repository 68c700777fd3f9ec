"""The captcha service (`farm serve`): an HTTP API for platforms and the usability-study pages.

app.py the API and its errors; state.py what service processes share in Redis; study_page.py
the study pages; metrics.py its Prometheus metrics; settings.py what it runs with.
"""

from farm.service.app import create_app
from farm.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
