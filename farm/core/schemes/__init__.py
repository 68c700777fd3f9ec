"""Captcha schemes by name: the built-ins, and plugins that other packages install.

A plugin is an entry point of the group `captchafarm.schemes` naming a Scheme subclass:

    [project.entry-points."captchafarm.schemes"]
    dotted = "captchafarm_dotted:DottedScheme"

Plugins are found on the first lookup, not at import. One that fails to import or does not fit
is skipped with a warning naming the entry point and its distribution (see `plugins`, shown by
`farm schemes`); the built-ins and the other plugins keep working.
"""

from __future__ import annotations

import inspect
import logging
import re
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from farm.core.charset import Charset
from farm.core.colour import MODES
from farm.exceptions import SchemeError, SettingError
from farm.core.schemes.base import Captcha, Scheme, captcha_seed
from farm.core.schemes.classic import ClassicGreyScheme, ClassicScheme
from farm.core.schemes.lines import LinesScheme
from farm.core.schemes.wave import WaveScheme

__all__ = ["Captcha", "Scheme", "Plugin", "captcha_seed", "check_scheme", "get_scheme", "plugins", "register",
           "scheme_names", "scheme_source", "ENTRY_POINT_GROUP", "BUILT_IN"]

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "captchafarm.schemes"
BUILT_IN = "built-in"
MAX_LENGTH = 12  # the substitute reads 24 columns, and CTC needs a blank between repeated characters
_NAME = re.compile(r"[a-z][a-z0-9_]*")  # goes into --scheme, --mix "a=0.5,b=0.5", manifests and metrics


@dataclass(frozen=True)
class Plugin:
    """One entry point of the group: where it comes from, and why it was skipped when it was (`error`)."""

    name: str  # the entry point's name: the scheme's name
    target: str  # "module:Class"
    distribution: str  # "captchafarm-dotted 0.1.0"
    error: str | None = None


_SCHEMES: dict[str, type[Scheme]] = {}
_SOURCES: dict[str, str] = {}  # name -> BUILT_IN or "<distribution> <version>"
_INSTANCES: dict[str, Scheme] = {}
_PLUGINS: list[Plugin] = []
_discovered = False


def check_scheme(cls) -> type[Scheme]:
    """Return `cls` if it is a usable Scheme class; else SchemeError saying what to fix."""
    if not (inspect.isclass(cls) and issubclass(cls, Scheme)):
        raise SchemeError(f"{cls!r} is not a subclass of farm.core.schemes.Scheme")
    if inspect.isabstract(cls):
        raise SchemeError(f"{cls.__qualname__} does not implement draw(text, rng)")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SchemeError(f"{cls.__qualname__}.name: {name!r} must be lowercase letters, digits and _, "
                          f"starting with a letter")
    for attr in ("width", "height"):
        value = getattr(cls, attr, None)
        if type(value) is not int or value <= 0:
            raise SchemeError(f"{cls.__qualname__}.{attr}: {value!r} must be a positive int (pixels)")
    lengths = cls.lengths
    if not (isinstance(lengths, tuple) and len(lengths) == 2 and all(type(n) is int for n in lengths)
            and lengths[1] <= MAX_LENGTH):
        raise SchemeError(f"{cls.__qualname__}.lengths: {lengths!r} must be a tuple (min, max) of ints, "
                          f"max at most {MAX_LENGTH}")
    if cls.mode not in MODES:
        raise SchemeError(f"{cls.__qualname__}.mode: {cls.mode!r} must be one of {', '.join(MODES)} (grey or colour)")
    if not isinstance(cls.alphabet, str) or any(c.isspace() for c in cls.alphabet):
        raise SchemeError(f"{cls.__qualname__}.alphabet: {cls.alphabet!r} must be a str without whitespace")
    try:
        Charset(cls.alphabet, *lengths)
    except ValueError as e:
        raise SchemeError(f"{cls.__qualname__}: {e}") from e
    return cls


def register(cls: type[Scheme], source: str = BUILT_IN) -> type[Scheme]:
    """Make a scheme class available by its name; SchemeError when it does not fit or the name is taken."""
    check_scheme(cls)
    if cls.name in _SCHEMES and _SCHEMES[cls.name] is not cls:
        raise SchemeError(f"scheme {cls.name!r} already exists ({_SOURCES[cls.name]}); choose another name")
    _SCHEMES[cls.name], _SOURCES[cls.name] = cls, source
    return cls


def _load(entry: EntryPoint) -> Plugin:
    """Register the scheme of one entry point; on any failure, a warning and the Plugin with its error."""
    dist = f"{entry.dist.name} {entry.dist.version}" if entry.dist else "an unknown distribution"
    try:
        cls = check_scheme(entry.load())
        if cls.name != entry.name:
            raise SchemeError(f"the entry point is named {entry.name!r} but {cls.__qualname__}.name is "
                              f"{cls.name!r}; make them equal")
        instance = cls()  # here, so a constructor that fails is reported like an import that fails
        register(cls, dist)
        _INSTANCES[cls.name] = instance
        return Plugin(entry.name, entry.value, dist)
    except Exception as e:  # a plugin's import may raise anything; it must not take the built-ins down
        error = str(e) if isinstance(e, SchemeError) else f"{type(e).__name__}: {e}"
        log.warning("scheme plugin %s = %s (from %s) skipped: %s", entry.name, entry.value, dist, error)
        return Plugin(entry.name, entry.value, dist, error)


def _discover() -> None:
    global _discovered
    if not _discovered:
        _discovered = True  # first: a plugin that looks schemes up while it loads must not recurse
        _PLUGINS.extend(_load(entry) for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name))


def plugins() -> list[Plugin]:
    """Every scheme entry point found, loaded or skipped (those have an `error`)."""
    _discover()
    return list(_PLUGINS)


def scheme_names() -> list[str]:
    """Built-ins first, then plugins by name."""
    _discover()
    return list(_SCHEMES)


def scheme_source(name: str) -> str:
    """Where a scheme comes from: BUILT_IN, or a plugin's distribution and version ("captchafarm-dotted 0.1.0")."""
    get_scheme(name)
    return _SOURCES[name]


def get_scheme(name: str) -> Scheme:
    """The shared instance of a scheme; SettingError lists the known names, or says why a plugin was skipped."""
    _discover()
    if name not in _SCHEMES:
        skipped = next((p for p in _PLUGINS if p.name == name and p.error), None)
        if skipped:
            raise SettingError(f"scheme: {name!r} is a plugin ({skipped.target} from {skipped.distribution}) "
                               f"that failed to load: {skipped.error}")
        raise SettingError(f"scheme: unknown scheme {name!r}; known: {', '.join(_SCHEMES)}")
    if name not in _INSTANCES:
        _INSTANCES[name] = _SCHEMES[name]()
    return _INSTANCES[name]


for _cls in (ClassicScheme, ClassicGreyScheme, LinesScheme, WaveScheme):
    register(_cls)
