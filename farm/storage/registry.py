"""The checkpoint registry: immutable versions under checkpoints/, and CURRENT naming the one in use.

Publishing claims a new version by creating its weights with a conditional create (so two
publishers never write into one version), writes the card the same way, and only then switches
`checkpoints/CURRENT` with a conditional write against the CURRENT it read: when two publishers
race, exactly one wins and the other gets a ConflictError it may retry on top of.
A version may also be stored unpromoted (not switched to): its card's `held_back` says why, and
a card `refused` by the fine-tune guard is promoted only when forced. Such a version counts as
promoted once it is CURRENT or one of its ancestors (`lineage`).
Every version belongs to a generation, recorded in its card by publish: the first version (no
parent) is generation 1, a version published on top of a parent the parent's generation + 1, so
a generation is a step down the lineage and the pools a version makes are of its generation. Two
versions made from one parent (a kept fine-tune beside the promoted one) share a generation; a
rollback makes the pools of the generation it goes back to. Cards written before the field read
theirs from the lineage (`generation`). A version's card also names the perturbation family its
pools are made with (`family`, farm.core.families): the fine-tune's move chooses it; any other
publish keeps the parent's; a card naming none (the bundled v1, older cards) is of the default family.
A version may carry a perturbation generator trained against it (farm.core.generator): its weights
beside the substitute's (`generator.safetensors`), its card as the card's `generator`, with their
sha256; `with_generator` publishes one on top of the version it was trained against, same weights,
same generation (nothing a bot learned from changes), and loading attaches it (`Solver.generator`),
or, for a version without one (a fine-tune's), its newest ancestor's.
Loading checks CURRENT, the card and the sha256 before building anything, caches by sha256, and
never unpickles. A worker keeps the solver it holds when a newer one fails to load (`refresh`).
Only the write paths publish: `ensure_current` (the bundled substitute as v1 in an empty store) is
called by commands that write pools; reading (`load`, `refresh`, `reference`) an empty registry is
an error that names the command to run, so a worker never publishes.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources

from farm.core.charset import Charset
from farm.core.checkpoint import Solver, load_solver, sha256_hex
from farm.core.families import card_family
from farm.core.generator import load_generator
from farm.core.zoo import card_ensemble
from farm.exceptions import CheckpointError, ConflictError, FarmError, HeldOutError, SettingError, SwitchLostError
from farm.storage.store import Store

__all__ = ["publish", "current", "require_current", "versions", "card", "Reference", "reference", "find_sha256", "load",
           "refresh", "ensure_current", "bundled", "bundled_generator", "promote", "rollback", "lineage", "generation",
           "family", "with_generator", "generator_version", "read_weights", "CURRENT", "GENERATOR_FILE"]

log = logging.getLogger(__name__)
CURRENT = "checkpoints/CURRENT"
CACHE_SIZE = 4  # a worker needs the current solver and perhaps the previous one; each holds its weights
_CACHE: OrderedDict[str, Solver] = OrderedDict()
# set by publish, never by the caller
_PUBLISHED_FIELDS = ("version", "parent", "generation", "published", "sha256", "held_back")
GENERATOR_FILE = "generator.safetensors"  # a version's generator, beside its model.safetensors (and a bundled one's)
CLAIM_ATTEMPTS = 8  # an unpromoted publish moves to the next number when another publisher took this one


def bundled() -> tuple[bytes, dict]:
    """The substitute shipped in the package: (weights, card)."""
    folder = resources.files("farm") / "bundled"
    try:
        return (folder / "model.safetensors").read_bytes(), json.loads((folder / "card.json").read_text())
    except FileNotFoundError as e:
        raise CheckpointError(f"bundled substitute: {e.filename} is missing; reinstall captchafarm or train one "
                              f"with `farm train --out farm/bundled`") from e


def bundled_generator() -> tuple[bytes, dict] | None:
    """The generator shipped beside the bundled substitute, trained against it: (weights, its card), if any.

    Kept apart from the substitute's card, so that card publishes alone as before; the first version of an
    empty store carries both (ensure_current).
    """
    folder = resources.files("farm") / "bundled"
    try:
        return (folder / GENERATOR_FILE).read_bytes(), json.loads((folder / "generator.json").read_text())
    except FileNotFoundError:
        return None


def _number(version: str) -> int | None:
    m = re.fullmatch(r"v(\d+)", version)
    return int(m.group(1)) if m else None


def versions(store: Store) -> list[str]:
    """Complete versions (those with a card), oldest first."""
    found = {k.split("/")[1] for k in store.list("checkpoints/") if k.endswith("/card.json")}
    return sorted(found, key=lambda v: (_number(v) or 0, v))


def _corrupt(reason: str) -> CheckpointError:
    return CheckpointError(f"{CURRENT} is corrupt: {reason}; repair it with `farm checkpoint promote VERSION`, "
                           f"VERSION one of those `farm checkpoint list` shows")


def _parse_pointer(data: bytes) -> dict:
    try:
        pointer = json.loads(data)
        if not (isinstance(pointer, dict) and isinstance(pointer.get("version"), str)
                and isinstance(pointer.get("sha256"), str)):
            raise ValueError("not {version, sha256}")
    except ValueError as e:  # UnicodeDecodeError too
        raise _corrupt(f"unreadable ({e})") from e
    return pointer


def _pointed_card(store: Store, pointer: dict) -> dict:
    """The card of the version CURRENT names, which must hold the sha256 CURRENT names."""
    version = pointer["version"]
    try:
        c = card(store, version)
    except (CheckpointError, ValueError) as e:  # a store outage is a StoreError and passes through
        raise _corrupt(f"it names {version!r}, which cannot be read ({e})") from e
    if c.get("sha256") != pointer["sha256"]:
        raise _corrupt(f"it names sha256 {pointer['sha256'][:12]}… but the card of {version} says "
                       f"{str(c.get('sha256'))[:12]}…")
    return c


def _read_current(store: Store, corrupt_ok: bool = False) -> tuple[dict | None, str | None, dict | None]:
    """CURRENT, the etag of exactly that content and the card it names ((None, None, None) in an empty store).

    A corrupt CURRENT (unreadable, naming a missing version, or another sha256 than its card's)
    raises; with `corrupt_ok` it reads as (None, its etag, None), for promote to replace it.
    """
    try:
        data, etag = store.get_with_etag(CURRENT)
    except KeyError:
        return None, None, None
    try:
        pointer = _parse_pointer(data)
        return pointer, etag, _pointed_card(store, pointer)
    except CheckpointError:
        if not corrupt_ok:
            raise
        return None, etag, None


def current(store: Store) -> dict | None:
    """{"version", "sha256"} of CURRENT, checked against the version's card; None in an empty store."""
    return _read_current(store)[0]


def require_current(store: Store) -> dict:
    """CURRENT; in an empty store a CheckpointError naming the commands that publish one (reading never does)."""
    now = current(store)
    if now is None:
        raise CheckpointError(f"{CURRENT}: the registry of {store.url} is empty, so there is no substitute to "
                              f"generate with; publish one first: `farm generate` or `farm pool refill` publish the "
                              f"bundled substitute as v1, `farm checkpoint publish DIR` a trained one")
    return now


def card(store: Store, version: str) -> dict:
    if not isinstance(version, str) or not version or "/" in version:
        raise SettingError(f"version: {version!r} is not a version name like v3")
    try:
        data = store.get(f"checkpoints/{version}/card.json")
    except KeyError:
        raise CheckpointError(f"version: {version!r} is not in the registry; see `farm checkpoint list`") from None
    try:
        return json.loads(data)
    except ValueError as e:
        raise CheckpointError(f"version {version}: card.json is not valid JSON ({e}); the version is corrupt") from e


@dataclass(frozen=True)
class Reference:
    """A published version as its card describes it, without its weights: what a farm job names and checks.

    It answers what a loaded Solver answers about itself (version, sha256, charset, card), so the
    checks and the manifest of a job take either.
    """

    version: str
    sha256: str
    card: dict

    @property
    def charset(self) -> Charset:
        try:
            return Charset.from_dict(self.card["charset"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"version {self.version}: its card has no valid charset ({e})") from e


def reference(store: Store, version: str | None = None) -> Reference:
    """A version (default: CURRENT) by its card alone: no weights are read, nothing is published."""
    version = version or require_current(store)["version"]
    c = card(store, version)
    if c.get("version") != version or not isinstance(c.get("sha256"), str):
        raise CheckpointError(f"version {version}: its card names version {c.get('version')!r} and sha256 "
                              f"{c.get('sha256')!r}; the version is corrupt, publish it again")
    return Reference(version, c["sha256"], c)


def find_sha256(store: Store, sha256: str, ensemble: list | None = None) -> str | None:
    """The version holding these weights (and naming these donors): CURRENT when it does, else the newest; None."""
    found = [v for v in versions(store) if (c := card(store, v)).get("sha256") == sha256
             and (c.get("ensemble") or []) == (ensemble or [])]
    now = (current(store) or {}).get("version")
    return now if now in found else (found[-1] if found else None)


def _check_charset(new: dict, running: dict | None, allow_change: bool) -> None:
    """Refuse a model for another alphabet than the `running` card's: the farm's pools and answers would not fit it."""
    if running is None or allow_change:
        return
    ours = running.get("charset", {}).get("alphabet")
    theirs = (new.get("charset") or {}).get("alphabet")
    if ours != theirs:
        raise CheckpointError(f"charset: the checkpoint reads {theirs!r} but {running.get('version')} (CURRENT) reads "
                              f"{ours!r}; pass allow_charset_change (--allow-charset-change) if that is intended")


def _create(store: Store, key: str, data: bytes, content_type: str) -> None:
    """Create an object that must not exist. A retried create whose first try landed is ours, not a conflict."""
    try:
        store.put(key, data, if_none_match=True, content_type=content_type)
    except ConflictError:
        try:
            if store.get(key) == data:
                return
        except KeyError:
            pass
        raise


def publish(store: Store, weights: bytes, card_fields: dict, parent: str | None = None,
            make_current: bool = True, allow_charset_change: bool = False, held_back: str | None = None,
            generator: bytes | None = None, keeps_generation: bool = False) -> str:
    """Publish weights with their card as a new version; returns the version.

    With `parent`, CURRENT must still be that version when the switch happens (a fine-tune
    publishes on top of the base it trained from); without, on top of whatever CURRENT was read.
    Without `make_current` the version is stored unpromoted: nothing switches, so `parent` (what
    it was made from) is recorded unchecked, and the card's `held_back` says why (`held_back`).
    `generator`: the weights of the generator the card's `generator` describes, stored beside the
    substitute's. `keeps_generation`: the version changes nothing its pools perturb with beyond its
    parent's (it adds a generator), so it is of its parent's generation, not the next.
    """
    if held_back is not None and make_current:
        raise ValueError("held_back: only a version published without make_current is held back")
    if (generator is None) != ("generator" not in card_fields):
        raise CheckpointError("card: names a generator but no generator weights were given" if generator is None
                              else "generator: weights were given but the card names no generator (its `generator`)")
    if generator is not None:
        try:  # refuse to publish a generator that cannot load, or whose weights its card does not describe
            load_generator(generator, card_fields["generator"])
        except CheckpointError as e:
            raise CheckpointError(f"generator: {e}") from e
    digest = sha256_hex(weights)
    if card_fields.get("sha256") not in (None, digest):
        raise CheckpointError("card: its sha256 does not match the weights being published")
    if (card_fields.get("zoo") or {}).get("role") == "held-out":
        raise HeldOutError(f"card: {card_fields['zoo'].get('name')} is a held-out zoo solver; it judges transfer "
                           f"and is never published as a substitute")
    fields = {k: v for k, v in card_fields.items() if k not in _PUBLISHED_FIELDS}
    if fields.get("refused") and make_current:
        raise CheckpointError(f"card: the fine-tune guard refused this model ({fields['refused']}); publish it "
                              f"without switching CURRENT (--no-current), then `farm checkpoint promote --force`")
    load_solver(weights, {**fields, "sha256": digest})  # refuse to publish what cannot load
    card_ensemble(fields)  # nor what no worker could generate with
    pointer, etag, running = _read_current(store)
    if make_current and parent is not None and (pointer or {}).get("version") != parent:
        raise ConflictError(f"CURRENT is {(pointer or {}).get('version')}, not the parent {parent}: another "
                            f"version was published meanwhile; retry on top of it")
    if not make_current and parent is not None:
        card(store, parent)  # a parent that is not in the registry is named as such
    _check_charset(fields, running, allow_charset_change)
    parent = parent or (pointer or {}).get("version")
    above = generation(store, parent) if parent else 0  # None: the parent's is unknown, and so is this one's
    if parent and "family" not in fields and not keeps_generation:  # a generation keeps its parent's family unless
        fields["family"] = {"name": family(store, parent)}  # the move chose another; a version of its parent's
        # generation keeps the parent's card as it stands (no family: the default of each scheme's mode)
    version = _claim(store, weights, 1 if make_current else CLAIM_ATTEMPTS)
    if generator is not None:  # before the card: a version is whole once its card exists
        _create(store, f"checkpoints/{version}/{GENERATOR_FILE}", generator, "application/octet-stream")
    full_card = {**fields, "sha256": digest, "version": version, "parent": parent,
                 "generation": None if above is None else above + (0 if keeps_generation and parent else 1),
                 "published": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if not make_current:
        full_card["held_back"] = held_back or "published without switching CURRENT"
    _create(store, f"checkpoints/{version}/card.json", json.dumps(full_card, indent=2, sort_keys=True).encode(),
            "application/json")
    if make_current:
        _switch(store, version, digest, etag)
    log.info("published %s (sha256 %s)", version, digest[:12])
    return version


def _claim(store: Store, weights: bytes, attempts: int) -> str:
    """Create the weights of the next free version number; returns the version."""
    for attempt in range(attempts):
        taken = [n for n in map(_number, store.list_dirs("checkpoints")) if n is not None]
        version = f"v{1 + max(taken, default=0)}"  # counts half-written versions: a crashed publisher's number stays used
        try:
            _create(store, f"checkpoints/{version}/model.safetensors", weights, "application/octet-stream")
            return version
        except ConflictError as e:
            if attempt == attempts - 1:
                raise ConflictError(f"version {version} was claimed by another publisher at the same time; nothing "
                                    f"was switched; retry the publish") from e


def _switch(store: Store, version: str, digest: str, expected_etag: str | None) -> None:
    """Point CURRENT at a version if it is still what the caller read."""
    body = json.dumps({"version": version, "sha256": digest}).encode()
    try:
        if expected_etag is None:
            store.put(CURRENT, body, if_none_match=True, content_type="application/json")
        else:
            store.put(CURRENT, body, if_match=expected_etag, content_type="application/json")
    except ConflictError as e:
        now = _read_current(store, corrupt_ok=True)[0]
        if now == {"version": version, "sha256": digest}:
            return  # our earlier attempt landed and its answer was lost; the retry found our own write
        raise SwitchLostError(f"CURRENT moved to {(now or {}).get('version')} while switching to {version}: another "
                              f"publisher won; {version} is stored but not current; retry on top of it "
                              f"(or `farm checkpoint promote {version}`)", version) from e


def _read(store: Store, version: str) -> tuple[bytes, dict]:
    c = card(store, version)
    try:
        weights = store.get(f"checkpoints/{version}/model.safetensors")
    except KeyError:
        raise CheckpointError(f"version {version}: model.safetensors is missing") from None
    return weights, c


def read_weights(store: Store, version: str) -> bytes:
    """A version's substitute weights, sha256-checked against its card (what a version made on top of it reuses)."""
    data, c = _read(store, version)
    if sha256_hex(data) != c.get("sha256"):
        raise CheckpointError(f"version {version}: model.safetensors does not match its card's sha256; the version "
                              f"is corrupt")
    return data


def generator_version(store: Store, version: str, cards: dict[str, dict] | None = None) -> str | None:
    """The version whose generator `version`'s pools of the generator method use: its own, else its newest
    ancestor's (trained against an older substitute, until one is trained against this version); None if none.

    A fine-tune publishes without one, and pools made with the generator method must not stop meanwhile.
    `cards` ({version: card}, as `farm checkpoint list` holds them) saves reading the store.
    """
    seen = set()
    while isinstance(version, str) and version not in seen:
        seen.add(version)
        try:
            c = cards[version] if cards is not None else card(store, version)
        except (KeyError, CheckpointError, SettingError):
            return None  # an ancestor gone: no generator to fall back on
        if "generator" in c:
            return version
        version = c.get("parent")
    return None


def _generator(store: Store, version: str):
    """The generator `version` uses (generator_version), verified against the sha256 its card names; else None."""
    owner = generator_version(store, version)
    if owner is None:
        return None
    try:
        data = store.get(f"checkpoints/{owner}/{GENERATOR_FILE}")
    except KeyError:
        raise CheckpointError(f"version {owner}: its card names a generator but {GENERATOR_FILE} is missing; "
                              f"the version is corrupt, train one again (`farm generator train`)") from None
    try:
        model = load_generator(data, card(store, owner)["generator"])
    except CheckpointError as e:
        raise CheckpointError(f"version {owner}: its generator is refused: {e}") from e
    if owner != version:
        log.info("version %s has no generator of its own: using %s's", version, owner)
    return model


def with_generator(store: Store, version: str, generator: bytes, generator_card: dict) -> str:
    """Publish `version`'s weights and card again with a generator trained against it, on top of it (CURRENT must
    still be `version`), of its generation; returns the new version."""
    base = card(store, version)
    fields = {k: v for k, v in base.items() if k not in _PUBLISHED_FIELDS and k != "generator"}
    return publish(store, read_weights(store, version), {**fields, "generator": generator_card}, parent=version,
                   generator=generator, keeps_generation=True)


def _verify(store: Store, version: str, device: str = "cpu") -> Solver:
    """Load a version from the store, refusing it with the reason when anything does not check out."""
    weights, c = _read(store, version)
    if c.get("version") != version:
        raise CheckpointError(f"version {version}: its card names version {c.get('version')!r}; it was copied "
                              f"from elsewhere, publish it instead")
    try:
        return load_solver(weights, c, device=device)
    except CheckpointError as e:
        raise CheckpointError(f"version {version} refused: {e}") from e


def _companions(store: Store, version: str, c: dict, device: str) -> list[Solver]:
    """The hardened copies a version's card names (farm.ops.anticipation), each verified against its sha256 there."""
    copies = (c.get("hardened") or {}).get("copies") if isinstance(c.get("hardened"), dict) else None
    loaded = []
    for copy in copies or []:
        if not isinstance(copy, dict) or not isinstance(copy.get("version"), str):
            raise CheckpointError(f"version {version}: card.json's hardened copies are malformed ({copy!r})")
        solver = _verify(store, copy["version"], device)
        if solver.sha256 != copy.get("sha256"):
            raise CheckpointError(f"version {version}: its hardened copy {copy['version']} has sha256 "
                                  f"{solver.sha256[:12]}, not the {str(copy.get('sha256'))[:12]} its card names")
        loaded.append(solver)
    return loaded


def promote(store: Store, version: str, allow_charset_change: bool = False, force: bool = False) -> None:
    """Make an existing, verified version CURRENT (rollback promotes an older one).

    It also repairs a corrupt CURRENT, which every other use of the registry refuses: still with
    a conditional write against the bytes it read, so of two repairs one wins. With no sound
    CURRENT there is no running alphabet to compare the version's with. A version the fine-tune
    guard refused is kept for inspection and promoted only with `force`: never by accident.
    """
    pointer, etag, running = _read_current(store, corrupt_ok=True)
    solver = _verify(store, version)  # never point CURRENT at something that does not load
    if solver.card.get("refused") and not force:
        raise CheckpointError(f"version {version}: the fine-tune guard refused it ({solver.card['refused']}); it is "
                              f"kept for inspection (`farm checkpoint show {version}`); promote it anyway with --force")
    if pointer == {"version": version, "sha256": solver.sha256}:
        return
    _check_charset(solver.card, running, allow_charset_change)
    _switch(store, version, solver.sha256, etag)
    log.info("promoted %s (was %s)", version, (pointer or {}).get("version") or ("corrupt" if etag else None))


def rollback(store: Store, version: str | None = None) -> str:
    """Promote the parent of CURRENT, or a named older version; returns the version now current."""
    if version is None:
        pointer = current(store)
        if pointer is None:
            raise CheckpointError("rollback: the registry is empty; nothing to roll back")
        version = card(store, pointer["version"]).get("parent")
        if not version:
            raise CheckpointError(f"rollback: {pointer['version']} has no parent; name the version to go back to")
    promote(store, version, allow_charset_change=True)  # going back to what ran before is always allowed
    return version


def lineage(cards: dict[str, dict], version: str | None) -> list[str]:
    """`version` (CURRENT) and its ancestors by the cards' parents, newest first: the versions that were promoted."""
    line = []
    while version in cards and version not in line:  # a cycle (hand-edited cards) ends the walk
        line.append(version)
        version = cards[version].get("parent")
    return line


def generation(store: Store, version: str, cards: dict[str, dict] | None = None) -> int | None:
    """The generation `version` belongs to: its card's, or for a card written before the field, from the lineage.

    Walking the parents to a card that records its generation (or to the root, generation 1).
    `cards` ({version: card}, as `farm checkpoint list` holds them) saves reading the store.
    None when it cannot be known: a version not in the registry, an ancestor gone, a cycle.
    """
    if cards is None:
        try:
            number = card(store, version).get("generation")
        except (CheckpointError, SettingError):
            return None
        if _is_generation(number):
            return number
        cards = {}
        for v in versions(store):  # an old store: read once, then every new card records its number
            try:
                cards[v] = card(store, v)
            except CheckpointError:
                pass  # an unreadable card is an ancestor gone
    steps, seen = 0, set()
    while version in cards and version not in seen:
        seen.add(version)
        if _is_generation(number := cards[version].get("generation")):
            return number + steps
        steps += 1
        version = cards[version].get("parent")
    return steps if version is None and steps else None


def family(store: Store, version: str | None = None, mode: str = "L") -> str:
    """The perturbation family of `version`'s pools of a `mode` scheme (default: CURRENT's; an empty store's first
    version's).

    Its card's, else the mode's default family (farm.core.families.card_family): the bundled v1 and cards
    written before families name none.
    """
    if version is None:
        now = current(store)
        if now is None:
            return card_family({}, mode)  # the bundled substitute, published as v1 by the first write
        version = now["version"]
    return card_family(card(store, version), mode)


def _is_generation(number) -> bool:
    """A recorded generation: an int from 1 (a card's field may be missing, null or foreign)."""
    return isinstance(number, int) and not isinstance(number, bool) and number >= 1


ENSURE_WAIT_SECONDS = 30  # another process publishing the first version writes two objects and CURRENT


def ensure_current(store: Store) -> dict:
    """CURRENT, publishing the bundled substitute first in an empty store."""
    now = current(store)
    if now is not None:
        return now
    data, c = bundled()
    generator = bundled_generator()
    if generator is not None:
        c = {**c, "generator": generator[1]}
    try:
        publish(store, data, c, generator=None if generator is None else generator[0])
    except ConflictError:
        deadline = time.monotonic() + ENSURE_WAIT_SECONDS
        while (now := current(store)) is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the winner is between claiming v1 and switching CURRENT
    now = current(store)
    if now is None:
        raise CheckpointError(f"{CURRENT}: still missing after another process began publishing the first version; "
                              f"run `farm checkpoint list` and promote a version")
    return now


def load(store: Store, version: str | None = None, device: str = "cpu",
         expect_charset: Charset | None = None) -> Solver:
    """A verified solver for a version (default: CURRENT), cached by version and sha256.

    Not by sha256 alone: two versions may share weights and differ in their cards (a fine-tune
    that kept its base's weights and named donors), and the card decides how pools are made.
    """
    version = version or require_current(store)["version"]  # CURRENT's sha256 checked against the card
    c = card(store, version)
    key = f"{version}:{c.get('sha256')}@{device}"
    if key in _CACHE and _CACHE[key].card == c:  # another store's version of that name may differ in its card
        _CACHE.move_to_end(key)
        solver = _CACHE[key]
    else:
        solver = _verify(store, version, device)
        solver.companions = _companions(store, version, c, device)
        solver.generator = _generator(store, version)
        _CACHE[key] = solver
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    if expect_charset is not None and solver.charset.alphabet != expect_charset.alphabet:
        raise CheckpointError(f"charset: {version} reads {solver.charset.alphabet!r}, expected "
                              f"{expect_charset.alphabet!r}")
    return solver


def refresh(store: Store, held: Solver | None, device: str = "cpu") -> tuple[Solver, FarmError | None]:
    """The solver a worker should use now: CURRENT when it loads, else the one it holds, and why.

    A corrupt or foreign CURRENT (or an unreachable store) must not stop a worker that already
    serves a good model: it keeps `held` and gets the error to report. With nothing held, it raises.
    """
    try:
        pointer = require_current(store)
        if held is not None and (pointer["version"], pointer["sha256"]) == (held.version, held.sha256):
            return held, None
        return load(store, None, device, expect_charset=held.charset if held is not None else None), None
    except FarmError as e:
        if held is None:
            raise
        log.warning("keeping substitute %s: the current checkpoint cannot be used: %s", held.version, e)
        return held, e
