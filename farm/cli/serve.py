"""`farm serve`: the captcha service for platforms and the study pages (farm.service)."""

from __future__ import annotations

import logging

import click

from farm.cli.common import store_option


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every one).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@store_option
@click.option("--redis", "redis_url", envvar="FARM_REDIS", default=None,
              help="Redis of the shared state: issued captchas, study sessions [env FARM_REDIS; default FARM_BROKER "
                   "when it is a Redis].")
@click.option("--ttl", type=click.IntRange(1), default=None,
              help="Seconds an issued captcha waits for its verify [env FARM_CAPTCHA_TTL; default 300].")
@click.option("--answer-window", type=click.IntRange(1), default=None,
              help="Seconds after a verify that POST /v1/answers still takes the captcha's id [default 86400].")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
def serve(host, port, store_url, redis_url, ttl, answer_window, log_level):
    """Run the captcha service: GET /v1/captcha, POST /v1/verify, POST /v1/answers, /docs, /metrics, /study/NAME.

    Platforms' API keys come from FARM_API_KEYS (platform=key,platform=key), never from a flag
    (flags show in the process list). One process; run several behind a load balancer for more.
    """
    import uvicorn

    from farm.service import ServiceSettings, create_app

    logging.getLogger().setLevel(getattr(logging, log_level.upper()))
    settings = ServiceSettings.from_env(store=store_url, redis=redis_url, ttl=ttl, answer_window=answer_window)
    app = create_app(settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, proxy_headers=True, server_header=False)
