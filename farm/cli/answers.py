"""`farm answers`: take in what platforms report of high-risk users' answers."""

from __future__ import annotations

from pathlib import Path

import click

from farm.cli.common import json_out, open_store, store_option


@click.group()
def answers():
    """Ingest and list attacker-answer batches."""


@answers.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--max-bytes", default=None, type=int,
              help="Refuse larger input, read no further than this [default 32 MiB].")
@click.option("--max-line-bytes", default=None, type=int, help="Reject longer lines [default 4096].")
@click.option("--max-records", default=None, type=int, help="Refuse files with more lines [default 200000].")
@click.option("--strict", is_flag=True, help="Exit with status 1 when any line was rejected.")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print the report (batch, counts, every rejected line) as JSON.")
def ingest(file, max_bytes, max_line_bytes, max_records, strict, store_url, as_json):
    """Validate FILE.jsonl (- for stdin) line by line and store the valid records as answers/<batch>.jsonl."""
    from farm.storage.answers import Limits, ingest_file

    given = {"max_bytes": max_bytes, "max_line_bytes": max_line_bytes, "max_records": max_records}
    limits = Limits(**{k: v for k, v in given.items() if v is not None})
    report = ingest_file(open_store(store_url), file, limits)
    if as_json:
        json_out(report.to_dict())
    else:
        for r in report.rejected:
            click.echo(f"{file}:{r.line}: rejected: {r.reason}", err=True)
        for r in report.unreadable[:5]:
            click.echo(f"{file}:{r.line}: unreadable: {r.reason}", err=True)
        where = f" in {report.key}" if report.key else ""
        news = " (already ingested: nothing added)" if report.duplicate else ""
        odd = (f" ({len(report.unreadable)} unreadable: answers outside the pool's alphabet or length, kept as the "
               f"bot's failures{'; --json lists them all' if len(report.unreadable) > 5 else ''})"
               if report.unreadable else "")
        click.echo(f"{report.accepted} accepted{odd}{where}{news}, {len(report.rejected)} rejected")
    if strict and report.rejected:
        raise SystemExit(1)


@answers.command("list")
@store_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(store_url, as_json):
    """Stored answer batches with their record counts."""
    from farm.storage.answers import batches, read_batch

    store = open_store(store_url)
    rows = [{"key": key, "records": len(read_batch(store, key))} for key in batches(store)]
    if as_json:
        json_out(rows)
        return
    for r in rows:
        click.echo(f"{r['key']}\t{r['records']}")
