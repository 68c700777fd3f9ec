"""Generations of a perturbation family: the card names it, pools follow it, and the farm's move changes it."""

from __future__ import annotations

import json
from functools import partial

import pytest
from click.testing import CliRunner

import farm.ops.finetune
from farm.api import generate
from farm.cli import main
from farm.cli.finetune import _family_line
from farm.core.families import FAMILIES, LEARNED, METHOD_FAMILIES, next_family
from farm.core.presets import PRESETS, preset_value
from farm.core.defaults import FinetuneConfig
from farm.core.spec import PoolSpec
from farm.exceptions import SettingError
from farm.ops.move import choose_family, evidence
from farm.ops.submit import generate_pool
from farm.storage import registry
from farm.storage.answers import ingest
from farm.storage.manifest import read_manifest
from farm.storage.pools import list_pools, pool_stats, read_keys
from farm.storage.store import LocalStore

SECRET = b"test-secret-not-for-production"
# a fine-tune as small as the CLI allows, its sizes having no flags: what becomes of the result is tested, not learning
QUICK = dict(batch_size=32, eval_every=15, patience=2, replay_count=200, guard_count=50, workers=0)

def publish_of_family(store, family: str | None) -> str:
    """A new version (the bundled weights) on top of CURRENT, its card naming `family` (None: naming none)."""
    weights, card = registry.bundled()
    return registry.publish(store, weights, card if family is None else {**card, "family": {"name": family}})


def test_each_family_is_served_by_a_preset_of_its_own_methods():
    assert list(FAMILIES) == ["noise", "geometry", "ink", "warped_ink"] and FAMILIES["noise"] == "recommended"
    for family, preset in FAMILIES.items():
        assert METHOD_FAMILIES[preset_value(preset, "method")] == family


def test_next_family_keeps_an_unlearned_family_and_leaves_a_learned_one():
    order = {"noise": "recommended", "geometry": "warp", "ink": "ink"}
    assert next_family("noise", {"noise": LEARNED - 0.01}, order) == "noise"  # not learned: it still defends
    assert next_family("noise", {}, order) == "noise"  # nothing answered of it: nothing says it is learned
    assert next_family("noise", {"noise": LEARNED}, order) == "geometry"  # learned: the first family never answered
    assert next_family("geometry", {"noise": 0.3, "geometry": 0.7}, order) == "ink"
    # every family answered and learned: the one read least, the earlier on a tie
    assert next_family("geometry", {"noise": 0.3, "geometry": 0.7, "ink": 0.5}, order) == "noise"
    assert next_family("ink", {"noise": 0.4, "geometry": 0.4, "ink": 0.5}, order) == "noise"


def test_a_bot_that_learned_ink_has_learned_its_noise_so_the_move_skips_noise():
    # edge pools are dots on top of the default's noise: adapted on ink, a bot reads noise too (53.6%, warp 21.2%)
    assert next_family("ink", {"ink": 0.7}) == "geometry"
    # learned noise: ink is partly new (its dots), geometry wholly so
    assert next_family("noise", {"noise": 0.7}) == "geometry"
    # noise was never answered, but ink carries it: counted as read as much as ink; ink and geometry learned apart
    # leave both at once unseen, whichever was read less
    assert next_family("geometry", {"ink": 0.7, "geometry": 0.5}) == "warped_ink"
    assert next_family("geometry", {"ink": 0.4, "geometry": 0.5}) == "warped_ink"
    # every family answered and learned: the one read least
    assert next_family("warped_ink", {"ink": 0.7, "geometry": 0.5, "warped_ink": 0.6}) == "geometry"


def test_on_colour_the_move_never_goes_to_noise_which_the_bots_clean_up_undoes():
    # every family learned, noise read least: on colour Otsu reads it back (44-60%), so the move never goes there
    read = {"noise": 0.3, "ink": 0.6, "geometry": 0.7, "warped_ink": 0.8}
    assert next_family("warped_ink", read) == "noise" and next_family("warped_ink", read, mode="RGB") == "ink"
    assert next_family("ink", {"ink": 0.7}, mode="RGB") == "geometry"
    assert next_family("noise", {"noise": 0.1}, mode="RGB") == "noise"  # not learned: a lineage's family stays
    move = choose_family("geometry", ["geometry"] * 2, [True, True], earlier={"ink": 0.6}, mode="RGB")
    assert move["name"] == "warped_ink"  # learned apart, never together


def test_the_move_weighs_what_earlier_generations_showed_of_the_bot():
    # round 2: the answers show geometry only; the card of v2 showed noise read at 90%, which a bot keeping its
    # labels still reads: the move goes on to ink, where with this batch alone it would go back to noise
    move = choose_family("geometry", ["geometry"] * 4, [True, True, False, True], earlier={"noise": 0.9})
    assert move == {"name": "ink", "from": "geometry", "read": {"geometry": 0.75}, "earlier": {"noise": 0.9},
                    "answers": 4, "learned": LEARNED}
    assert choose_family("geometry", ["geometry"] * 4, [True, True, False, True])["name"] == "noise"
    # a card holds its lineage's evidence: what its move was given, and what its answers showed on top
    assert evidence({"family": move}) == {"noise": 0.9, "geometry": 0.75}
    assert evidence({"family": {"name": "noise"}}) == {} == evidence({})
    assert _family_line(move, published=True) == (
        "pools of the new version are of family ink, not geometry: the bot read geometry 75.0% (4 answers; earlier "
        "generations: noise 90.0%; learned at 25%)")
    # what this batch shows of a family replaces what earlier ones showed: the bot no longer reads geometry
    assert choose_family("geometry", ["geometry"] * 10, [True] + [False] * 9, earlier={"geometry": 0.9})["name"] == \
        "geometry"


def test_a_version_records_its_family_and_cards_naming_none_are_of_the_default(store, monkeypatch):
    registry.ensure_current(store)
    assert "family" not in registry.card(store, "v1") and registry.family(store, "v1") == "noise"  # the bundled v1
    assert registry.family(LocalStore(store.root / "empty")) == "noise"  # an empty store: the v1 to come
    publish_of_family(store, "geometry")  # v2: the move chose "geometry"
    publish_of_family(store, None)  # v3: a publish that names no family keeps its parent's
    assert [registry.family(store, v) for v in ("v1", "v2", "v3")] == ["noise", "geometry", "geometry"]
    assert registry.card(store, "v3")["family"] == {"name": "geometry"} and registry.family(store) == "geometry"
    old = registry.card(store, "v2")  # a card written before families
    del old["family"]
    store.put("checkpoints/v2/card.json", json.dumps(old).encode())
    assert registry.family(store, "v2") == "noise"
    monkeypatch.setenv("FARM_STORE", store.url)
    listed = json.loads(CliRunner().invoke(main, ["checkpoint", "list", "--json"]).output)
    assert [r["family"] for r in listed] == ["noise", "noise", "geometry"]
    assert [r["family_colour"] for r in listed] == ["ink", "ink", "geometry"]  # naming none: ink on colour schemes
    shown = CliRunner().invoke(main, ["checkpoint", "list"]).output.splitlines()
    assert "  noise|ink +gen  " in shown[0] and "  geometry  " in shown[2]  # v1 carries the bundled generator


def test_a_pool_records_its_family_and_pools_before_families_read_it_from_their_method(store, monkeypatch):
    monkeypatch.setenv("FARM_STORE", store.url)
    substitute = registry.load(store, registry.ensure_current(store)["version"])
    for name, method in (("p", "iterative"), ("clean", "none")):
        spec = PoolSpec(count=2, shard_size=2, method=method, steps=1 if method != "none" else None)
        generate_pool(store, name, spec, [substitute], SECRET, progress=False, processes=1)
    assert read_manifest(store, "p")["family"] == "noise" and read_manifest(store, "clean")["family"] is None
    assert [(r["pool"], r["family"]) for r in list_pools(store)] == [("clean", None), ("p", "noise")]
    assert pool_stats(store, "p")["family"] == "noise"
    assert "family noise" in CliRunner().invoke(main, ["pool", "stats", "p"]).output
    old = read_manifest(store, "p")  # a pool made before manifests recorded the family
    del old["family"]
    store.put("pools/p/manifest.json", json.dumps(old).encode())
    assert pool_stats(store, "p")["family"] == "noise"


def test_generate_with_no_method_options_follows_the_family_of_the_generation(tmp_path, monkeypatch):
    root = tmp_path / "store"
    store = LocalStore(root)
    registry.ensure_current(store)
    publish_of_family(store, "geometry")  # CURRENT v2: pools of geometry, the warp preset
    warp = PoolSpec.from_preset("warp", count=2, shard_size=2, steps=1)

    def spec_of(pool):
        return PoolSpec.from_dict(read_manifest(store, pool)["spec"])

    generate("api", 2, store=str(root), shard_size=2, steps=1)  # settings alone adjust the family's preset
    assert spec_of("api") == warp and read_manifest(store, "api")["family"] == "geometry"
    cli = ["generate", "--count", "2", "--shard-size", "2", "--store", str(root), "--no-progress"]
    assert CliRunner().invoke(main, [*cli, "--pool", "cli", "--steps", "1"]).exit_code == 0
    assert spec_of("cli") == warp and [r["family"] for r in list_pools(store)] == ["geometry", "geometry"]
    # an explicit preset or method wins
    assert CliRunner().invoke(main, [*cli, "--pool", "named", "--preset", "recommended", "--steps", "1"]).exit_code == 0
    assert spec_of("named") == PoolSpec(count=2, shard_size=2, steps=1)
    assert CliRunner().invoke(main, [*cli, "--pool", "method", "--method", "momentum", "--steps", "1"]).exit_code == 0
    assert spec_of("method") == PoolSpec(count=2, shard_size=2, steps=1)
    assert CliRunner().invoke(main, [*cli, "--pool", "paper", "--preset", "paper", "--steps", "1"]).exit_code == 0
    assert spec_of("paper") == PoolSpec.from_preset("paper", count=2, shard_size=2, steps=1)
    # a pinned version: its family, not CURRENT's; v1 names none: noise on a grey scheme, ink on colour
    assert CliRunner().invoke(main, [*cli, "--pool", "v1", "--version", "v1", "--steps", "1", "--scheme",
                                     "classic_grey"]).exit_code == 0
    assert spec_of("v1") == PoolSpec(count=2, shard_size=2, steps=1, scheme="classic_grey")
    assert CliRunner().invoke(main, [*cli, "--pool", "v1c", "--version", "v1", "--steps", "1"]).exit_code == 0
    assert spec_of("v1c") == PoolSpec.from_preset("edge", count=2, shard_size=2, steps=1)
    assert spec_of("v1c").dots == PRESETS["edge"]["colour"]["dots"]  # the preset's colour values: classic is colour
    assert read_manifest(store, "v1c")["family"] == "ink"


def test_a_colour_source_folder_takes_the_colour_default(tmp_path):
    """A platform's colour captchas are colour: --source follows the folder's mode as --scheme follows the scheme's."""
    from farm.storage.folder import folder_mode
    from tests.test_folders import make_folder
    make_folder(tmp_path / "grey", count=3, labels="csv", scheme="lines", digits=False)
    make_folder(tmp_path / "colour", count=3, labels="csv", scheme="classic", digits=False)
    (tmp_path / "colour" / "odd.png").write_bytes(b"not a png")  # read_folder names it later; the mode reads past it
    assert folder_mode(tmp_path / "grey") == "L" and folder_mode(tmp_path / "colour") == "RGB"
    (tmp_path / "colour" / "odd.png").unlink()
    root = tmp_path / "store"
    cli = ["generate", "--store", str(root), "--no-progress", "--steps", "1", "--shard-size", "3"]
    for folder, family in (("grey", "noise"), ("colour", "ink")):
        run = CliRunner().invoke(main, [*cli, "--pool", folder, "--source", str(tmp_path / folder)])
        assert run.exit_code == 0, run.output
        manifest = read_manifest(LocalStore(root), folder)
        assert manifest["family"] == family
    assert read_manifest(LocalStore(root), "colour")["spec"]["eps"] == PRESETS["edge"]["colour"]["eps"]


def answers_reading(store, pool: str, share: float) -> str:
    """An answer batch of a bot that reads the first `share` of the pool's captchas right and misreads the rest."""
    keys = read_keys(store, pool)
    right = round(share * len(keys))
    lines = [{"pool": pool, "captcha_id": k["id"], "answer": k["answer"] if i < right else k["answer"][::-1] + "x",
              "risk": "attacker", "time": "2026-12-06T12:00:00Z"} for i, k in enumerate(keys)]
    return ingest(store, "".join(json.dumps(r) + "\n" for r in lines).encode()).key


@pytest.mark.slow
def test_farm_finetune_moves_to_another_family_once_the_bot_reads_this_one(tmp_path, monkeypatch):
    store = LocalStore(tmp_path / "store")
    monkeypatch.setenv("FARM_STORE", store.url)
    monkeypatch.setattr(farm.ops.finetune, "FinetuneConfig", partial(FinetuneConfig, **QUICK))
    substitute = registry.load(store, registry.ensure_current(store)["version"])
    # grey captchas: v1 names no family, and on grey that is noise (on colour, ink: DEFAULT_FAMILIES)
    spec = PoolSpec(count=40, shard_size=40, method="iterative", mask="full", eps=8 / 255, steps=2,
                    scheme="classic_grey")
    generate_pool(store, "p", spec, [substitute], SECRET, progress=False, processes=1)
    # no weights move, no donor is named, no copy is hardened (tests/test_anticipation.py)
    quick = ["--steps", "15", "--lr", "1e-12", "--donors", "0", "--anticipate", "0"]
    # the bot reads 20% of noise: still a defence, and with nothing learned nothing is published
    unlearned = CliRunner().invoke(main, ["finetune", "--answers", answers_reading(store, "p", 0.2), *quick])
    assert unlearned.exit_code == 1 and "Error: no gain" in unlearned.output, unlearned.output
    assert registry.versions(store) == ["v1"]
    # it reads 60%: learned; the move publishes v2 of the family it never answered, with v1's weights
    moved = CliRunner().invoke(main, ["finetune", "--answers", answers_reading(store, "p", 0.6), *quick, "--json"])
    assert moved.exit_code == 0, moved.output
    result = json.loads(moved.output[moved.output.index("{"):])
    assert result["weights"] == "unchanged" and result["version"] == "v2" and result["promoted"]
    shown = {"name": "geometry", "from": "noise", "read": {"noise": 0.6}, "earlier": {}, "answers": 40,
             "learned": LEARNED}
    assert result["family"] == shown and registry.card(store, "v2")["family"] == shown
    assert registry.card(store, "v2")["sha256"] == registry.card(store, "v1")["sha256"]
    # the next pools `farm generate` makes are of the new family
    made = CliRunner().invoke(main, ["generate", "--pool", "next", "--count", "2", "--steps", "1", "--no-progress"])
    assert made.exit_code == 0, made.output
    assert PoolSpec.from_dict(read_manifest(store, "next")["spec"]) == PoolSpec.from_preset("warp", count=2, steps=1)
    assert read_manifest(store, "next")["family"] == "geometry"
    # the bot learns geometry too: v2's card remembers it read noise, so the move goes on to ink, not back to noise
    generate_pool(store, "g", PoolSpec.from_preset("warp", count=40, shard_size=40, steps=1, scheme="classic_grey"),
                  [substitute], SECRET, progress=False, processes=1)
    again = CliRunner().invoke(main, ["finetune", "--answers", answers_reading(store, "g", 0.6), *quick, "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output[again.output.index("{"):])["family"] == {
        "name": "ink", "from": "geometry", "read": {"geometry": 0.6}, "earlier": {"noise": 0.6}, "answers": 40,
        "learned": LEARNED}


def test_every_attack_method_has_a_family():
    """METHOD_FAMILIES sits beside the methods' declarations: a new method left out of it would make pools
    that the move counts as clean captchas."""
    from farm.core.attacks.settings import DECLARED
    from farm.core.families import method_family
    assert set(METHOD_FAMILIES) == set(DECLARED)
    # a generator's pools are ink when it places dots, as a generator trained for colour does by default
    cases = ((None, "RGB"), (None, "L"), (0, "RGB"), (8, "L"))
    assert [method_family("generator", dots, mode) for dots, mode in cases] == ["ink", "noise", "noise", "ink"]


def test_a_generation_naming_no_family_is_noise_on_grey_and_ink_on_colour():
    """Issue 28: on colour a bot reading the channel of most contrast gets back what dense noise takes; ink holds."""
    from farm.core.families import DEFAULT_FAMILIES, card_family
    assert DEFAULT_FAMILIES == {"L": "noise", "RGB": "ink"}
    assert card_family({}) == card_family({}, "L") == "noise" and card_family({}, "RGB") == "ink"
    assert card_family({"family": {"name": "geometry"}}, "RGB") == "geometry"  # a named family holds on any mode
    with pytest.raises(SettingError, match="mode: 'CMYK'"):
        card_family({}, "CMYK")


def test_the_edge_preset_takes_its_colour_values_on_colour_schemes_only():
    from farm.core.presets import PRESETS, expand
    colour = PRESETS["edge"]["colour"]
    on_grey, on_colour = expand("edge", {}), expand("edge", {}, mode="RGB")
    assert {k: on_colour[k] for k in colour} == colour and on_grey["dots"] == 12 and on_grey["eps"] == 32 / 255
    assert expand("edge", {"dots": 5}, mode="RGB")["dots"] == 5  # what is given wins over the colour values
    assert expand("recommended", {}, mode="RGB") == expand("recommended", {})  # a preset with none: unchanged
    spec = PoolSpec.from_preset("edge", count=1, scheme="classic")
    assert spec.dots == colour["dots"] and spec.eps == colour["eps"]
    assert PoolSpec.from_preset("edge", count=1, scheme="classic_grey").dots == 12


def test_registry_and_api_follow_the_default_family_of_the_schemes_mode(store):
    registry.ensure_current(store)
    assert registry.family(store, "v1") == "noise" and registry.family(store, "v1", mode="RGB") == "ink"
    publish_of_family(store, "noise")  # v2 names its family: it holds on colour too
    assert registry.family(store, mode="RGB") == "noise"
