"""captchafarm: adversarial text captchas that keep solving bots guessing."""

__version__ = "0.1.0"
