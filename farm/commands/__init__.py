"""Command groups of `farm` beyond the core verbs in farm.cli, one module per noun."""

from __future__ import annotations

import click

from farm.commands.answers import answers
from farm.commands.attacker import attacker
from farm.commands.checkpoint import checkpoint
from farm.commands.finetune import finetune
from farm.commands.job import job
from farm.commands.pool import pool
from farm.commands.serve import serve
from farm.commands.study import study
from farm.commands.zoo import zoo

GROUPS = (checkpoint, pool, answers, zoo, job, finetune, attacker, serve, study)


def register_all(main: click.Group) -> None:
    for group in GROUPS:
        main.add_command(group)
