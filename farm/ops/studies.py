"""Usability studies: are a pool's captchas still easy for people? Definitions, responses, the report.

studies/<study>/study.json                             the pools and how many captchas of each a participant sees
studies/<study>/responses/<participant>/<step>.json    one answer: pool, captcha id, what was typed, correct, seconds

The study page of the service (farm.service.study_page) shows each participant the study's captchas
in a random order and writes one response object per answer (a new object each time: no writer
rewrites another's); `farm study report` reads them back. A participant is a random id: nothing
about the person is asked or kept. Responses hold captcha ids, what was typed and whether it was
right, never a captcha's true answer; keep studies/ on the back-end side with keys/ all the same.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from farm.exceptions import ConflictError, PoolError, SettingError, StudyError
from farm.core.spec import PoolSpec
from farm.storage.layout import check_pool_name
from farm.storage.manifest import complete_shards, read_manifest

__all__ = ["Arm", "Study", "create_study", "read_study", "list_studies", "parse_arms", "read_config",
           "write_response", "read_responses", "report", "plot_report", "wilson_interval", "median_interval",
           "MAX_STEPS"]

MAX_STEPS = 60  # captchas a participant sees: past a few dozen a study measures fatigue, not the captchas
READ_THREADS = 8  # one GET per response: a few in flight hide the store's latency
BOOTSTRAP_RESAMPLES = 2000  # enough for a stable 95% percentile interval of a median
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Arm:
    """One pool of a study and how many of its captchas each participant sees."""

    pool: str
    count: int


@dataclass(frozen=True)
class Study:
    """What a participant is shown: `count` captchas of each arm's pool, all shuffled together."""

    name: str
    arms: tuple[Arm, ...]
    title: str = "How readable are these captchas?"
    created: str = ""
    pools: dict = field(default_factory=dict)  # pool -> spec summary at creation (what the report compares)

    @property
    def steps(self) -> int:
        return sum(a.count for a in self.arms)

    def to_dict(self) -> dict:
        return {"study": self.name, "title": self.title, "created": self.created,
                "arms": [{"pool": a.pool, "count": a.count} for a in self.arms], "pools": self.pools}

    @classmethod
    def from_dict(cls, data: dict) -> "Study":
        return cls(data["study"], tuple(Arm(a["pool"], int(a["count"])) for a in data["arms"]),
                   data.get("title") or cls.title, data.get("created", ""), data.get("pools", {}))


def check_study_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise SettingError(f"study: {str(name)[:70]!r} must be 1-64 letters, digits, '-', '_' or '.', "
                           f"starting with a letter or digit")
    return name


def study_key(name: str) -> str:
    return f"studies/{check_study_name(name)}/study.json"


def response_key(study: str, participant: str, step: int) -> str:
    return f"studies/{check_study_name(study)}/responses/{participant}/{step:03d}.json"


def parse_arms(values: list[str], per_pool: int = 1) -> list[Arm]:
    """`["clean", "adv=3"]` -> arms; a pool without `=N` gets `per_pool` captchas."""
    arms = []
    for value in values:
        pool, _, count = value.partition("=")
        if count and not count.isdigit():
            raise SettingError(f"pool: {value!r}: the count after '=' must be a whole number, like {pool}=3")
        arms.append(Arm(pool.strip(), int(count) if count else per_pool))
    return arms


def read_config(path: str | Path) -> dict:
    """A study file: JSON `{"title": "...", "pools": {"clean": 3, "momentum-32": 3}}` (or a list of names)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise StudyError(f"config: cannot read {path} ({e.strerror})") from e
    except json.JSONDecodeError as e:
        raise StudyError(f"config: {path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("pools"), (dict, list)):
        raise StudyError(f'config: {path} needs "pools": {{"pool name": captchas per participant, ...}}')
    unknown = sorted(set(data) - {"title", "pools", "per_pool"})
    if unknown:
        raise StudyError(f"config: {path}: unknown field(s) {', '.join(unknown)}; allowed: title, pools, per_pool")
    return data


def _describe(manifest: dict) -> dict:
    spec = manifest["spec"]
    label = "clean" if spec["method"] == "none" else f"{spec['method']} {spec['norm']} {spec['eps'] * 255:.0f}/255"
    return {"label": label, "scheme": spec["scheme"], "method": spec["method"], "norm": spec["norm"],
            "eps": spec["eps"], "steps": spec["steps"], "mask": spec["mask"]}


def create_study(store, name: str, arms: list[Arm], title: str | None = None, replace: bool = False) -> Study:
    """Define a study over pools of the store (each with a complete shard); refuses to overwrite one unless `replace`."""
    check_study_name(name)
    if not arms:
        raise SettingError("pools: a study needs at least one pool (clean vs adversarial needs two)")
    seen, pools = set(), {}
    for arm in arms:
        check_pool_name(arm.pool)
        if arm.pool in seen:
            raise SettingError(f"pools: {arm.pool!r} is named twice; give it one count")
        seen.add(arm.pool)
        if not 1 <= arm.count <= MAX_STEPS:
            raise SettingError(f"pools: {arm.pool}={arm.count}: a count must be 1 to {MAX_STEPS}")
        try:
            manifest = read_manifest(store, arm.pool)
        except PoolError as e:
            raise StudyError(str(e)) from None
        shards = complete_shards(store, arm.pool)
        if not shards:
            raise StudyError(f"pool: {arm.pool!r} has no complete shard yet; wait for `farm generate` to finish one")
        spec = PoolSpec.from_dict(manifest["spec"])
        ready = sum(len(spec.indices(s)) for s in shards if s < spec.shards)
        if ready < arm.count:  # a participant sees each captcha once
            raise SettingError(f"pools: {arm.pool}={arm.count}: pool {arm.pool!r} holds {ready} complete captchas and "
                               f"a participant sees different ones; lower the count, or grow the pool "
                               f"(`farm pool refill --pool {arm.pool} --min {arm.count}`) and wait for its shards")
        pools[arm.pool] = _describe(manifest)
    total = sum(a.count for a in arms)
    if total > MAX_STEPS:
        raise SettingError(f"pools: {total} captchas per participant is over {MAX_STEPS}; lower the counts")
    study = Study(name, tuple(arms), title or Study.title,
                  datetime.now(timezone.utc).isoformat(timespec="seconds"), pools)
    body = json.dumps(study.to_dict(), indent=2, sort_keys=True).encode()
    try:
        store.put(study_key(name), body, if_none_match=not replace, content_type="application/json")
    except ConflictError:
        raise StudyError(f"study: {name!r} exists already; pick another name (its responses stay with it) "
                         f"or pass --replace") from None
    return study


def read_study(store, name: str) -> Study:
    try:
        return Study.from_dict(json.loads(store.get(study_key(name))))
    except KeyError:
        raise StudyError(f"study: {name!r} does not exist; create it with `farm study create {name} --pool ...`") \
            from None


def list_studies(store) -> list[str]:
    return [name for name in store.list_dirs("studies") if _NAME.match(name)]


def write_response(store, record: dict) -> str:
    """Store one answer of a participant (see the module's layout); returns its key."""
    key = response_key(record["study"], record["participant"], record["step"])
    store.put(key, json.dumps(record, sort_keys=True).encode(), content_type="application/json")
    return key


def read_responses(store, name: str) -> list[dict]:
    keys = [k for k in store.list(f"studies/{check_study_name(name)}/responses/") if k.endswith(".json")]

    def read(key: str) -> dict | None:
        try:
            return json.loads(store.get(key))
        except KeyError:  # deleted since the listing
            return None

    with ThreadPoolExecutor(READ_THREADS) as threads:
        return [r for r in threads.map(read, keys) if r is not None]


def wilson_interval(passed: int, total: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a pass rate: honest at 0 and 1 and for a handful of answers, unlike p ± z·se."""
    if total == 0:
        return None
    from scipy.stats import binomtest  # here: ~1.5 s to import, which the study pages need not wait for

    ci = binomtest(passed, total).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def median_interval(values, confidence: float = 0.95, seed: int = 0) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of a median (seeded: the same responses give the same report); None under 2."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:  # one time says nothing of how times spread
        return None
    rng = np.random.default_rng(seed)
    resampled = rng.choice(values, size=(BOOTSTRAP_RESAMPLES, len(values)), replace=True)  # (R, n)
    low, high = np.quantile(np.median(resampled, axis=1), [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def report(store, name: str, confidence: float = 0.95) -> dict:
    """Per pool of a study: answers, pass rate (Wilson interval), median seconds (bootstrap interval)."""
    study = read_study(store, name)
    responses = read_responses(store, name)
    rows = []
    for arm in study.arms:
        mine = [r for r in responses if r["pool"] == arm.pool]
        passed = sum(bool(r["correct"]) for r in mine)
        seconds = [float(r["seconds"]) for r in mine]
        rows.append({"pool": arm.pool, **study.pools.get(arm.pool, {}), "answers": len(mine), "passed": passed,
                     "skipped": sum(bool(r.get("skipped")) for r in mine),
                     "participants": len({r["participant"] for r in mine}),
                     "pass_rate": passed / len(mine) if mine else None,
                     "pass_rate_ci": wilson_interval(passed, len(mine), confidence),
                     "median_seconds": float(np.median(seconds)) if seconds else None,
                     "median_seconds_ci": median_interval(seconds, confidence)})
    finished = {r["participant"] for r in responses if r["step"] == study.steps - 1}
    return {"study": name, "title": study.title, "confidence": confidence, "answers": len(responses),
            "participants": len({r["participant"] for r in responses}), "finished": len(finished),
            "steps": study.steps, "pools": rows}


def plot_report(summary: dict, path: str | Path) -> Path:
    """A PNG comparing the pools: pass rate and median solve time, each with its interval."""
    try:
        import matplotlib
    except ImportError:
        raise StudyError("plot: matplotlib is not installed; pip install 'captchafarm[study]'") from None
    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(path)
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix and path.suffix.lower().removeprefix(".") not in formats:  # checked before anything is drawn
        raise SettingError(f"plot: {path.name} needs an extension matplotlib writes, such as .png "
                           f"({', '.join(sorted(formats))})")
    rows = summary["pools"]
    names = [r["pool"] if r.get("label") in (None, r["pool"]) else f"{r['pool']}\n{r['label']}" for r in rows]
    x = np.arange(len(rows))

    def bars(ax, value, interval, scale, ylabel):
        heights = np.array([(r[value] or 0) * scale for r in rows])
        ax.bar(x, heights, color="#4878a8", edgecolor="#1f3b57")
        known = [k for k, r in enumerate(rows) if r[interval]]  # one answer or none: no interval to draw
        if known:
            low = [heights[k] - rows[k][interval][0] * scale for k in known]
            high = [rows[k][interval][1] * scale - heights[k] for k in known]
            ax.errorbar(x[known], heights[known], yerr=[low, high], fmt="none", ecolor="black", capsize=6)
        for k, r in enumerate(rows):
            ax.annotate(f"n={r['answers']}", (k, 0), xytext=(0, 3), textcoords="offset points", ha="center",
                        fontsize=8, color="white" if heights[k] else "black")
        ax.set_xticks(x, names, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)

    figure, (left, right) = plt.subplots(1, 2, figsize=(max(7, 1.8 * len(rows) + 3), 4), layout="constrained")
    level = f"{summary['confidence']:.0%}"
    bars(left, "pass_rate", "pass_rate_ci", 100, f"pass rate, % ({level} Wilson interval)")
    left.set_ylim(0, 105)
    bars(right, "median_seconds", "median_seconds_ci", 1, f"median solve time, s ({level} bootstrap)")
    figure.suptitle(f"study {summary['study']}: {summary['participants']} participants, {summary['answers']} answers")
    try:
        figure.savefig(path, dpi=120)
    except OSError as e:
        raise SettingError(f"plot: cannot write {path} ({e.strerror or e})") from e
    finally:
        plt.close(figure)
    return path
