"""The `farm` command: train and evaluate substitutes, read captchas, generate adversarial pools.

Rules for a command (one module per verb or group in this package, registered by farm.cli._groups):

- Errors: call the library and let its errors rise. A FarmError (farm.exceptions; a command's
  own check of its options raises SettingError) becomes click's `Error: <message>` and exit
  status 1 here, in FarmGroup, and nowhere else. Anything else is a bug and keeps its traceback:
  never catch ValueError or Exception to turn it into a message. Catch an error only to do
  something other than exit (print a report first, skip one bad item of a list, name the flag).
- Imports: a command imports what it runs inside its body, so that `farm --help` and every
  other command start without loading torch, the service or the farm (`time farm --help`
  stays well under a second). Module tops import click, farm.cli.common, farm.exceptions and
  light constants only.
"""

from __future__ import annotations

import logging

import click

from farm import __version__
from farm.exceptions import FarmError


class FarmGroup(click.Group):
    """The `farm` group: a FarmError from any command below it is printed as `Error: <message>`, exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FarmError as e:
            raise click.ClickException(str(e)) from e


@click.group(cls=FarmGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110,
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
