"""Every command of `farm`, one module per verb or noun in farm/cli/."""

from __future__ import annotations

import click

from farm.cli.answers import answers
from farm.cli.evaluate import evaluate
from farm.cli.generate import generate
from farm.cli.preview import preview
from farm.cli.schemes import schemes
from farm.cli.solve import solve
from farm.cli.train import train
from farm.cli.attacker import attacker
from farm.cli.checkpoint import checkpoint
from farm.cli.finetune import finetune
from farm.cli.generator import generator
from farm.cli.job import job
from farm.cli.pool import pool
from farm.cli.serve import serve
from farm.cli.study import study
from farm.cli.zoo import zoo

GROUPS = (train, solve, evaluate, generate, preview, schemes, checkpoint, pool, answers, zoo, job, finetune, generator,
          attacker, serve, study)


def register_all(main: click.Group) -> None:
    for group in GROUPS:
        main.add_command(group)
