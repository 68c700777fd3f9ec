"""The fine-tune's defaults, which the CLI shows without importing torch: FinetuneConfig, run by farm.ops.finetune.

`farm generate`'s setting is a preset: farm.core.presets.
"""

from dataclasses import dataclass

from farm.exceptions import SettingError


@dataclass
class FinetuneConfig:
    """How a fine-tune runs. Saved in the new card so the run can be repeated."""

    steps: int = 400  # at most; stops earlier once held-out agreement stops rising
    batch_size: int = 64
    replay: float = 0.75  # share of each batch drawn from clean captchas of the substitute's schemes
    replay_count: int = 8000  # clean captchas rendered once for the replay
    lr: float = 1e-4  # 3e-4 lost 3-4 points of clean accuracy within 50 steps on bot answers (benchmarks/arms_race.py)
    holdout: float = 0.2  # share of answers kept apart to measure agreement
    # learn only what the bot got wrong: its right answers teach the substitute to resist its own
    # perturbations, and the next pool fooled bots less (benchmarks/extraction_variants.py)
    mistakes_only: bool = True
    # zoo donors the new version is attacked together with: those that fail where the attackers
    # failed, best first, at most this many (farm.ops.resemblance; 0: none). Two: with the ensemble's
    # gradients balanced, a second donor fools the bot and every held-out solver more
    # (benchmarks/arms_race.py --donors 1 vs 2); each costs one more model per attack step
    donors: int = 2
    # anticipation (farm.ops.anticipation): once the bot has learned the family, own labelled captchas made per
    # family it learned, on which copies of the substitute and donors are adapted as the bot adapts and become
    # the next generation's targets; 0: off. 3,000 is the operator's N (issue 26). Against operators who keep
    # every label (benchmarks/arms_race.py --adaptive --remember --anticipate 3000): round 1 7.2% and 6.8% of the
    # next generation (21.2% and 22.8% without), round 2 4.0% and 1.2% once it moves to warped_ink (30.4% and 36.4%
    # when geometry stayed); a move takes up to ~27 min on 2 cores (30 beside other work)
    anticipate: int = 3000
    anticipate_steps: int = 600  # the operator's recipe (farm.ops.attacker.OPERATOR), the copies' replay as the fit's
    eval_every: int = 50
    patience: int = 3  # evaluations without a better agreement before stopping
    tolerance: float = 0.02  # largest drop of clean accuracy on a target scheme that may be published
    guard_count: int = 500  # fresh captchas per target scheme, for the guard during the fit and for the final check
    risks: tuple[str, ...] = ("attacker",)  # whose answers are queries to an attack model
    seed: int = 0
    workers: int = 2  # render processes for the replay and for anticipation's own pools (0: in this process)

    @classmethod
    def from_dict(cls, data: dict) -> "FinetuneConfig":
        """Fields from JSON (a task argument); an unknown name is a SettingError naming it."""
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise SettingError(f"config: unknown field(s) {', '.join(unknown)}; known: {', '.join(cls.__dataclass_fields__)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def validate(self) -> "FinetuneConfig":
        if self.steps < 1 or self.batch_size < 2:
            raise SettingError("steps and batch-size: need steps >= 1 and batch-size >= 2")
        if not 0 <= self.replay < 1:
            raise SettingError(f"replay: must be in [0, 1) (got {self.replay})")
        if not 0 < self.holdout < 1:
            raise SettingError(f"holdout: must be in (0, 1) (got {self.holdout})")
        if self.donors < 0:
            raise SettingError(f"donors: must be >= 0 (got {self.donors})")
        if self.anticipate < 0 or self.anticipate_steps < 1:
            raise SettingError(f"anticipate: must be >= 0 captchas per family, in >= 1 steps (got "
                               f"{self.anticipate}, {self.anticipate_steps})")
        if self.tolerance < 0:
            raise SettingError(f"tolerance: must be >= 0 (got {self.tolerance})")
        return self
