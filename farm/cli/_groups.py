"""Command groups of `farm` beyond the core verbs in farm.cli, one module per noun."""

from __future__ import annotations

import click

from farm.cli.answers import answers
from farm.cli.attacker import attacker
from farm.cli.checkpoint import checkpoint
from farm.cli.finetune import finetune
from farm.cli.job import job
from farm.cli.pool import pool
from farm.cli.serve import serve
from farm.cli.study import study
from farm.cli.zoo import zoo

GROUPS = (checkpoint, pool, answers, zoo, job, finetune, attacker, serve, study)


def register_all(main: click.Group) -> None:
    for group in GROUPS:
        main.add_command(group)
