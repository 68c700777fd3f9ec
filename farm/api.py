"""The Python facade for platforms and scripts: a pool in one call, and the platform's client.

    from farm.api import PoolClient, generate
    summary = generate("signup-v5", 10_000, store="s3://captchas/prod")  # the preset of CURRENT's family
    client = PoolClient("s3://captchas/prod")                            # draw and verify

`generate` is `farm generate` without the broker: the same preset (the family of the substitute's
generation, farm.core.families), the same checks, the same bytes; settings given as keywords
override the preset's, as options do on the command line.
"""

from __future__ import annotations

from farm.core.families import base_preset
from farm.core.spec import PoolSpec, scheme_mode
from farm.ops.client import PoolClient
from farm.ops.shard import attack_solvers
from farm.ops.submit import generate_pool
from farm.storage import config, registry
from farm.storage.store import open_store

__all__ = ["generate", "PoolClient"]


def generate(pool: str, count: int, *, store: str | None = None, preset: str | None = None, scheme: str = "classic",
             seed: int = 0, version: str | None = None, progress: bool = False, processes: int | None = None,
             **settings) -> dict:
    """Generate (or complete) a pool in this process; returns the summary `farm generate --json` prints.

    `store`: a URL (default FARM_STORE, else ./farm-data). The substitute is `version` or the
    store's CURRENT (an empty store gets the bundled substitute published as v1, as the CLI does).
    `preset`: by default the preset of the substitute's family (farm.core.families.base_preset).
    `processes`: shard processes on CPU (default: one per core).
    """
    target = open_store(store)
    if preset is None:
        preset = base_preset(registry.family(target, version, scheme_mode(scheme)), None, settings)
    spec = PoolSpec.from_preset(preset, count=count, scheme=scheme, seed=seed, **settings).validate()
    if version is None:
        registry.ensure_current(target)  # a write path, as `farm generate`'s
    device = config.device()
    substitute = registry.load(target, version, device=device)
    return generate_pool(target, pool, spec, attack_solvers(spec, substitute, device), config.secret(target), device,
                         progress=progress, processes=processes)
