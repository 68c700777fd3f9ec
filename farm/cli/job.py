"""`farm job`: follow the farm's generation jobs (queued by `farm generate` with FARM_BROKER set)."""

from __future__ import annotations

import click

from farm.cli.common import json_out, open_store, store_option


@click.group()
def job():
    """Follow generation jobs of the distributed farm."""


@job.command()
@click.argument("job_id")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(job_id, store_url, as_json):
    """Progress of a job, read from the store: complete shards and captchas, shards that gave up.

    The first time it finds the job complete it writes the pool's final manifest (a `--no-wait`
    job has no producer left to do it).
    """
    from farm.storage import jobs
    from farm.storage.manifest import read_manifest

    store = open_store(store_url)
    record = jobs.load(store, job_id)
    state = jobs.progress(store, record)
    if state["state"] == "complete" and read_manifest(store, record["pool"]).get("status") != "complete":
        jobs.finish(store, record)
    if as_json:
        json_out(state)
        return
    click.echo(f"job {state['job']} (pool {state['pool']}, created {state['created']}): {state['state']}, "
               f"{state['complete']}/{state['count']} captchas, {state['shards_complete']}/{state['shards']} shards")
    for failure in state["failed"]:
        click.echo(f"  shard {failure['shard']} gave up on {failure['worker']} at {failure['time']}: "
                   f"{failure['error']}")
