"""The `farm` command: train and evaluate substitutes, read captchas, generate adversarial pools.

Every command lives in its own module of this package (registered by farm.cli._groups); errors
become messages and exit codes in one place, farm.cli.common.
"""

from __future__ import annotations

import logging

import click

from farm import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110,
                                "terminal_width": 110})
@click.version_option(__version__, prog_name="farm")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """captchafarm: adversarial text captchas that solving bots misread and people still read.

    Runs embedded by default: a local folder as object store (FARM_STORE, default ./farm-data)
    and the substitute solver bundled with the package.
    """
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")


from farm.cli._groups import register_all  # noqa: E402  (the group must exist first)

register_all(main)

if __name__ == "__main__":
    main()
