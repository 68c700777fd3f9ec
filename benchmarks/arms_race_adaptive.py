"""Arms race against bots that retrain (issue 26): does the farm's move beat a bot that learned the last generation?

`python -m benchmarks.arms_race --adaptive` runs this. In a temporary LocalStore (or --keep DIR,
which a rerun resumes: complete pools, adapted bots and a move already published on the same base
from the same answered pool are reused), round k,
for each held-out bot (farm.core.zoo: never a donor, never used to choose a setting):

1. pools of generation k, made as `farm generate` makes them with no method options (so of the
   family its card names): N labelled captchas to adapt on, A to answer, T to test (seeds apart);
2. the bot is adapted on the N labelled captchas as an operator would (farm.ops.attacker.adapt:
   600 steps, lr 1e-3, 30% clean replay, from its previous round's weights) and answers the A;
   with --remember the operator keeps every label it bought and adapts on all of them (N per round);
3. the answers are ingested and the farm's move runs: `farm finetune` (farm.ops.finetune.finetune,
   default config) on top of generation k, which publishes generation k+1 and chooses its family;
4. the bot reads T captchas of generation k+1 and of generation k, the same seed (fresh
   captchas, never adapted on), as served and after Otsu binarisation.

Generation k's pools are shared by the bots whose round starts from the same version (round 1:
v1); each bot's move is its own (CURRENT goes back to its base before it). Per round and bot it
prints: the bot on gen k and gen k+1 (served / Otsu), the family the move chose and the evidence
(the share of each family the bot's answers read), the substitute's clean accuracy before and
after the move (goal: within 2 points), the wall time of the move and of the adaptation. Last line:
`adaptive_gain: <1 - gen(k+1)/gen(k)>`, round 1, as served, mean over bots.

Measured 2026-12-08, one bot alone on the machine with its 2 cores (--threads 2: torch threads and the
benchmark's pools; the move renders its own pools in farm finetune's 2 processes, which it did in one before),
warped_ink's dots guarded too (identity.drop_turning_dots) and every attack's draws keyed by the secret (round 1's
pools were made just before that change; round 2's after):

  FARM_SECRET=arms-race-26 python -m benchmarks.arms_race --adaptive --rounds 2 --remember --anticipate 3000 \
      --bots transformer-a --threads 2 --keep DIR

round bot           gen k served  Otsu  k+1 served  Otsu  family (read)                   substitute clean  move s  SSIM
    1 transformer-a    v1  65.6% 29.6%   v5  13.6%  2.8%  ink->geometry (ink 69%)          96.8% -> 95.4%     752  0.58
    2 transformer-a    v5  59.6% 20.4%   v9   3.2%  4.0%  geometry->warped_ink (geom. 60%) 95.4% -> 95.0%    1073  0.52
    1 crnn-aug         v1  61.6% 48.0%   v5  12.4%  9.6%  ink->geometry (ink 69%)          96.8% -> 95.6%     583  0.58
    2 crnn-aug         v5  57.2% 41.6%   v9   3.2%  6.8%  geometry->warped_ink (geom. 59%) 95.6% -> 96.0%     940  0.52
adaptive_gain (round 1): transformer-a 0.793, crnn-aug 0.799; transformer-a 2442 s after round 1's bot (adapted in
341 s, 2 threads), crnn-aug 3485 s in all (its own store, every pool with today's code, beside a CI run at first)

- **The move takes 583-752 s in round 1 and 940-1073 s in round 2 on 2 cores** (transformer-a's round 1 beside a
  warp_identity run and a test run for part of it): within the 30-minute bound in every round. Round 2's own
  guarded geometry pool of 3,000 is most of it; last run's 2572 s was the same work on one thread beside another
  race and a test run.
- Both bots meet the bots' goal in both rounds: at most 25% of generation k+1 and at most half of generation k, as
  served and after Otsu (transformer-a's round 2 was not measured last run). The substitute's clean accuracy stays
  within 2 points each round (96.8 -> 95.4 -> 95.0%, 96.8 -> 95.6 -> 96.0%).
- The v9 sheet (docs/warped-ink-on-copies-sheet.png, now this run's) shows warped glyphs whose dots are
  guarded: none tips a glyph nearer one of its 11 rivals; whether people read them is still unmeasured.

Measured 2026-12-07 (later) with warps that keep every glyph its own character (farm.core.identity: the ascent
steered off turning a glyph nearer a rival's shape, the field scaled down until none is; unguarded, these v5 warps
turned 27% of glyphs), otherwise as below, the two bots side by side (beside a test run for part of it; crnn-aug's
round 1 reused the last run's adapted bot and move, which makes no warp, and made its v5 test pool again):

round bot           gen k served  Otsu  k+1 served  Otsu  family (read)                   substitute clean  move s  SSIM
    1 crnn-aug         v1  67.2% 54.4%   v5  15.6% 10.4%  ink->geometry (ink 71%)          96.8% -> 95.8%     805  0.58
    2 crnn-aug         v5  56.8% 40.8%   v9   1.6%  6.0%  geometry->warped_ink (geom. 56%) 95.8% -> 95.8%    2572  0.52
    1 transformer-a    v1  63.2% 39.2%   v5  15.2%  9.6%  ink->geometry (ink 68%)          96.8% -> 95.8%     877  0.57
adaptive_gain (round 1): crnn-aug 0.768, transformer-a 0.759

- The bots' goal holds with the guard: at most 25% and at most half of generation k, as served and after Otsu. The
  guard gives the bots back 9-10 points in round 1 (6.0% and 6.4% unguarded, below). transformer-a's round 2 did
  not finish in the session.
- The move of round 2 took 2572 s, over the 30-minute bound: its own geometry pool of 3,000 (to harden the copies
  on) is guarded too, half as dear again (+50% a captcha), on a machine shared with the other bot's run.
- The sheet of that v9 (docs/warped-ink-on-copies-sheet.png until 2026-12-08) showed what the guard did not check
  then: the dots, which could still close a glyph towards another (JRDH's D towards an O); they are guarded now.

Measured 2026-12-07 with the family warped_ink (farm.core.attacks.warped_edge: warp's field, then edge's dots and
noise on the warped glyphs), which the move now goes to once ink and geometry are both learned; otherwise as below
(FARM_SECRET=arms-race-26, N = 3,000, 1,000 answers, 250-captcha tests, operators who keep every label; the two
bots side by side on 2 cores, each in a store of its own, beside a test run and evaluations in round 1):

  FARM_SECRET=arms-race-26 python -m benchmarks.arms_race --adaptive --rounds 2 --remember --anticipate 3000 \
      --bots B --keep DIR

round bot           gen k served  Otsu  k+1 served  Otsu  family (read)                   substitute clean  move s  SSIM
    1 crnn-aug         v1  67.2% 54.4%   v5   6.0%  4.4%  ink->geometry (ink 71%)          96.8% -> 95.8%    1827  0.52
    2 crnn-aug         v5  50.0% 32.0%   v9   4.0%  5.6%  geometry->warped_ink (geom. 53%) 95.8% -> 95.8%    1622  0.47
    1 transformer-a    v1  63.2% 39.2%   v5   6.4%  4.4%  ink->geometry (ink 68%)          96.8% -> 95.8%    1764  0.51
    2 transformer-a    v5  59.2% 21.2%   v9   1.2%  2.0%  geometry->warped_ink (geom. 61%) 95.8% -> 95.8%    1611  0.47
adaptive_gain (round 1): crnn-aug 0.911, transformer-a 0.899

- Both rounds meet the bots' goal for both bots: at most 25% of generation k+1 and at most half of generation k,
  as served and after Otsu. Round 2, where geometry stayed before (30.4% / 36.4%), goes to warped_ink: 4.0% and
  1.2%. The bots had adapted on 6,000 labelled captchas, 3,000 of ink and 3,000 of geometry, and read neither's
  lesson into both at once; v9 is aimed at the substitute, both donors and three hardened copies (v6-v8, adapted
  on v1's own ink pool and v5's own geometry pool).
- Round 1 is the same computation as below with the same seeds; it reads within 2 points of it as served (up to 6
  after Otsu: the bots' adaptation is not bit-reproducible across the day's changes).
- The moves took 1611-1827 s: round 2 under the 30-minute bound (its own geometry pool of 3,000 is most of it),
  round 1 over it here, beside a test run and two evaluations (877-884 s below, with less beside it).
- Usability is not shown. Glyph SSIM is 0.47 (it scores moved strokes as damage, as for geometry), and the
  contact sheet (docs/warped-ink-on-copies-sheet.png, DIR/sheets/v9-test.png: clean | served | perturbation)
  shows what last stop's sheet of geometry on copies showed, with dots on top: aimed at hardened copies, the warp
  bends some glyphs towards others (a C towards an L, a D towards an O). People's reading of it is unmeasured.

Measured before warped_ink, with the move as it is otherwise, anticipation on in every round (it runs once the bot
learned the current family, so round 1 too), operators who keep every label (colour `classic`, v1 of the
family ink; FARM_SECRET=arms-race-26, N = 3,000, 1,000 answers, 250-captcha tests; 2 cores, the two bots
running side by side, each in a store of its own):

  nice -n 10 python -m benchmarks.arms_race --adaptive --rounds 2 --remember --anticipate 3000 --bots B --keep DIR

round bot           gen k served  Otsu  k+1 served  Otsu  family (read)                 substitute clean  move s  SSIM
    1 crnn-aug         v1  66.0% 54.0%   v5   7.2%  4.8%  ink->geometry (ink 68%)        96.8% -> 96.8%     877  0.51
    2 crnn-aug         v5  52.4% 32.4%   v9  30.4% 18.4%  geometry stays (geometry 54%)  96.8% -> 95.4%  ~1600  0.51
    1 transformer-a    v1  61.2% 33.2%   v5   6.8%  0.8%  ink->geometry (ink 65%)        96.8% -> 95.4%     884  0.52
    2 transformer-a    v5  58.4% 18.0%   v9  36.4% 10.8%  geometry stays (geometry 59%)  95.4% -> 95.4%  ~1600  0.51
adaptive_gain (round 1; each bot's run prints its own): crnn-aug 0.891, transformer-a 0.889, mean 0.890

- Round 1 meets the goal for both bots, as served and after Otsu: copies hardened on the farm's own ink
  captchas (v2-v4) take the geometry generation to 7.2% / 6.8% (without copies, 21.2% / 22.8%: below).
- Round 2 does not: 30.4% and 36.4% (goal at most 25%), 0.58 and 0.62 of gen k (goal at most half). The
  bots read less of gen k than before (52.4% / 58.4% against 61.6% / 63.2%), since it was aimed at round 1's
  copies too. Every family is learned (ink in round 1, noise carried by ink, geometry now) and geometry,
  read least, stays; the new copies (v6-v8, clean 80.4% / 78.8% / 85.2%) are hardened on v1's own ink pool
  (made by round 1's move, reused) and v5's own geometry pool.
- The move of round 2: 616 s and 580 s after its own geometry pool was made, which took ~16.5 min (3,000
  captchas aimed at v5 and its copies; made by a first run of the move, stopped and resumed on the code that
  reuses v1's ink pool instead of making v5's): ~27 min in all, under the 30-minute bound but not by much.
- Glyph SSIM of a geometry generation is 0.51: SSIM scores every moved stroke as damage, so it is no
  usability measure for a warp (benchmarks/warp_measures.py), and people's reading of warps is unmeasured;
  the contact sheets (--keep DIR/sheets) read as captchas.
- Screening on v9 (benchmarks/anticipation.py, the first 150 of the same test captchas, aimed at the
  substitute, both donors and the three copies; bot served / after Otsu, glyph SSIM):

  generation of v9                      crnn-aug        transformer-a   SSIM   captchas/s
  geometry, as published (3 px)         29.3% / 19.3%   29.3% /  8.7%   0.51   2.5
  geometry, aimed at the 3 copies alone  30.0% / 18.0%   29.3% / 10.0%   0.54   4.5
  geometry, 40 steps                    26.7% / 14.0%   26.0% /  7.3%   0.47   1.2
  geometry, displacement 3.5 px         23.3% / 12.7%   22.7% /  8.0%   0.45   1.6
  geometry, displacement 4 px           18.0% /  9.3%   15.3% /  2.7%   0.41   2.5
  ink (edge)                            24.7% / 34.7%   18.7% / 20.7%   0.86   3.7
  noise (recommended)                   22.0% / 40.0%   17.3% / 26.0%   0.87   2.4

  Warps of 3.5 and 4 px meet the goal on these 150 for both bots, after Otsu too; but the 250 read 36.4%
  where these 150 read 29.3% at 3 px, and the budget was looked for on the judges, which only donors may
  choose. The contact sheets of v9 (12 captchas, `farm generate --version v9 --displacement D`, `farm
  preview`; 3 px: docs/warp-on-copies-sheet.png) show why a larger budget is not the answer without
  people's reading: aimed at hardened copies, the warp bends glyphs towards others already at 3 px (a C
  towards an L, a 6 towards a b, a 0 towards a D), as the gradients of robust models do (they point at
  features people see too), and more at 3.5-4 px.
  Ink and noise are read least as served but given back by Otsu, noise most (the move never goes to noise
  on colour: farm.core.families.UNDONE). Aimed at the copies alone, the warp reads the same to both bots
  at nearly twice the rate: once copies exist, the substitute and donors cost time and add nothing here.

Measured before the changes above (anticipation in round 2 only, its own pools made by the base, the
move free to go to noise on colour; N = 3,000, 1,000 answers, 250-captcha tests; 2 cores, 2-3 jobs at once).
Each bot ran in its own --keep copy of one store holding v1's pools (its move its own); the first crnn-aug
run moved with the rule of before (ink to noise, the first family its answers never showed):

  nice -n 10 python -m benchmarks.arms_race --adaptive --rounds 2 --bots crnn-aug --keep DIR
  nice -n 10 python -m benchmarks.arms_race --adaptive --rounds 2 --remember --bots crnn-aug --keep DIR2
  nice -n 10 python -m benchmarks.arms_race --adaptive --rounds 2 --remember --bots transformer-a --keep DIR3

round bot            gen k served   Otsu  k+1 served   Otsu family (read by the bot)        substitute clean move s
    1 crnn-aug          v1  68.8%  52.4%   v2  53.6%  60.4% ink->noise (ink 71%), before    96.8% -> 96.8%      46
    1 crnn-aug          v1  68.8%  52.4%   v2  21.2%  14.0% ink->geometry (ink 71%)         96.8% -> 96.8%      47
    1 transformer-a     v1  57.2%  34.0%   v3  22.8%  11.2% ink->geometry (ink 65%)         96.8% -> 96.8%      81
    2 crnn-aug          v2  86.8%  68.4%   v3  13.6%   8.8% noise->geometry (noise 86%; forgets ink)  96.8% ->  45
    2 crnn-aug (remembers) v2  61.6%  50.0%   -     -      -  geometry stays (geometry 60%, ink 71%): none    50
    2 transformer-a (rem.) v3  63.2%  38.8%   v4  59.6%  48.8% geometry->noise (geometry 65%, ink 65%)     79
  with --anticipate 3000 (the farm adapts copies of substitute, crnn-b and resnet-a on 3,000 own captchas of
  each learned family, ink and geometry, and aims the new version at them; same bots, pools and answers):
    2 crnn-aug (remembers) v2  61.6%  50.0%   v6  29.6%  22.0% geometry stays, 3 copies               1088
    2 transformer-a (rem.) v3  63.2%  38.8%   v7  27.6%  44.0% geometry->noise, 3 copies, 2 donors     1057
adaptive_gain (round 1, the rule of today): crnn-aug 0.692, transformer-a 0.601, mean 0.647

- Round 1 meets the goal for both bots (at most 25%, at most half of gen k). Ink's pools hold the
  default's noise, so a bot adapted on ink reads a noise generation at 53.6% (after Otsu more than
  ink itself): the move now counts a family whose ingredients a learned one holds as read
  (farm.core.families.INGREDIENTS) and goes to geometry.
- transformer-a's move first lost to the guard: its fine-tune trained (96.8% -> 93.8% clean, over the
  2-point tolerance), was kept refused as v2, and the move waited. A new family no longer waits for
  weights: v3 is v1's weights with the family geometry.
- Round 2 against an operator who keeps every label (6,000: ink and geometry) is not met: the bot reads
  61.6% of geometry, 66.8% of noise (benchmarks/arms_race.py's test seed, through scratch reading), and
  every family is learned; the move sees it (the card's earlier evidence) and keeps the family read
  least, which publishes nothing. Anticipation (farm.ops.anticipation, now the default) halves it:
  29.6% and 27.6% as served, against 61.6% and 59.6% without (the goal's "at most half" met, its 25%
  missed by 3-5 points); after Otsu crnn-aug falls to 22.0% but transformer-a reads noise back at
  44.0%. The move took ~18 min (two runs sharing 2 cores), the substitute's clean accuracy unchanged.
  Screening (crnn-aug, round 1's bot, the same ink family, copies of v1 hardened on an own pool of v1; the
  harness was benchmarks/anticipation.py at bf7a649): hardened donors only 66.4%; the hardened substitute
  first 42.0%; its copy beside the substitute 71.2% until edge's dense noise is aimed at it too, 51.2%;
  members weighted by softmax(-loss) 72.4%; against the remembering bot, one copy 42.0%, three 28.0%.

Measured on grey, before colour became the default, round 1 (N = 3,000 labelled, 1,000 answers, 250-captcha
tests; 2 shared cores under load 7-9,
so seconds are wall time at a fraction of a core). The two bots ran as two processes on copies of one
store made after generation 1's pools (the same pools, each bot's move its own):

  nice -n 10 python -m benchmarks.arms_race --adaptive --rounds 1 --bots crnn-aug --keep /work/scratch/move/run1
  cp -a /work/scratch/move/run1/store /work/scratch/move/run1-t/store  # once v1's pools were complete
  nice -n 10 python -m benchmarks.arms_race --adaptive --rounds 1 --bots transformer-a --keep /work/scratch/move/run1-t

round bot            gen k served   Otsu  k+1 served   Otsu family (read by the bot)     substitute clean move s
    1 crnn-aug          v1  75.6%  60.8%   v2   8.8%  11.6% noise->geometry (noise 76%)   96.0% -> 96.0%     262
    1 transformer-a     v1  73.2%  43.6%   v2  10.4%   4.4% noise->geometry (noise 77%)   96.0% -> 96.0%     262
adaptive_gain: crnn-aug 0.884, transformer-a 0.858, mean 0.871

Adaptation (600 steps on 3,000): 1016 s (crnn-aug), 1149 s (transformer-a). The bots read 76.3% and
77.3% of the 1,000 captchas they answered, so noise is learned (>= 25%) and the move chose geometry,
the family they never answered. Both moves published v2 with v1's weights (no step agreed better with
the held-out answers, as issue 26 found) and named the donor crnn-b, so v2's warp pools are aimed at
the substitute and crnn-b; the substitute's clean accuracy is unchanged (the same weights). The move
took 262 s of wall time each (the fine-tune that learns nothing is most of it; the family choice
reads the answered pools' manifests and keys). Generation costs here: 3,000 default captchas ~8-12 min,
250 warp captchas with crnn-b 43-148 s.
Round 2, crnn-aug only, for time with N = 1,500 and 500 answers (its round-1 pools, bot and move reused):

  nice -n 10 python -m benchmarks.arms_race --adaptive --rounds 2 --bots crnn-aug --adapt 1500 --answers 500 \
      --keep /work/scratch/move/run1

round bot            gen k served   Otsu  k+1 served   Otsu family (read by the bot)     substitute clean move s
    2 crnn-aug          v2  57.2%  46.0%   v3   2.0%  48.0% geometry->noise (geometry 59%) 96.0% -> 94.2%     135

Adapted on 1,500 warp captchas of v2 (426 s, from its round-1 weights), the bot reads 57-59% of the warp:
learned, and with two families the move goes back to noise, the family these answers never showed (it
does not look at earlier generations' evidence). v3 trained (best step > 0; clean 96.0% -> 94.2%, within
2 points) and names crnn-b and resnet-a, so v3's noise pools are aimed at three models. The bot reads 2.0%
of them as served, because retraining on the warp alone made it forget the noise: the same test pools
read by the bot after round 1 / after round 2 (served, Otsu): v1 75.6% 60.8% / 6.0% 55.6%; v2 8.8% 11.6% /
57.2% 46.0%; v3 68.8% 58.4% / 2.0% 48.0%. So v3's noise is no defence against a bot that remembers
noise (68.8%), and Otsu gives back about half of it to the one that forgot (48%): round 2's 2% is the
bot's forgetting, not a new family, and it needs a third family (an ink family, or noise that survives
Otsu) to be a moving target past two rounds. (Measured with two families; since the edge preset joined
as the family ink, the same answers would move round 2 to ink, the first family they never showed.)

What it says: against a bot that adapted on generation k, generation k+1 of another family is read
at 9-10% (goal: at most 25%, and at most half of gen k: met in round 1, both bots, as served and after
Otsu). The gain is the family's: a warp generation meets the adapted bot as one it never learned
(benchmarks/moving_target.py: ~25% with the substitute alone; crnn-b in the ensemble takes it lower).
Not measured here: glyph-region SSIM of the warp pools (it compares moved glyphs pixel by pixel, not a
usability measure; see benchmarks/warp_measures.py), a bot that keeps the labels of both generations
(moving_target: 61-73% of both), rounds past the second, round 2 for transformer-a.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from farm.api import generate
from farm.core.checkpoint import load_solver_dir
from farm.core.model import to_grey, to_tensor
from farm.core.defaults import FinetuneConfig
from farm.core.preprocess import parse_chains
from farm.core.spec import scheme_mode
from farm.core.zoo import HELD_OUT, ZOO
from farm.core.zoo_loading import load_member
from farm.exceptions import FinetuneRefused
from farm.ops.attacker import adapt, answer_pool
from farm.ops.finetune import finetune
from farm.ops.preview import contact_sheet, pool_pairs
from farm.storage import registry
from farm.storage.answers import ingest
from farm.storage.manifest import read_manifest
from farm.storage.pools import pool_images, pool_names, pool_stats
from farm.storage.store import LocalStore

__all__ = ["run"]

ADAPT_SEED, ANSWER_SEED, TEST_SEED = 300, 100, 2601  # the test seed is every generation's: pairs of one captcha
BOTS = ("crnn-aug", "transformer-a")
QUICK = {"adapt": 200, "answers": 100, "test": 50, "adapt_steps": 60,
         "finetune": dict(steps=60, eval_every=20, replay_count=1000, guard_count=100, workers=0)}


def read(store, pool: str, bot, otsu) -> tuple[float, float]:
    """The bot's accuracy on a pool as served and after Otsu binarisation (the toolbox's most useful step).

    A colour pool is read in the bot's grey (the conversion it was trained with), at the captchas' size.
    """
    records, _, adversarial = pool_images(store, pool)
    x = to_grey(to_tensor(list(adversarial)), bot.model.config.grey)
    truth = [bot.charset.normalize(r["answer"]) for r in records]
    served = bot.read(x)
    cleaned = bot.read(torch.cat([otsu.apply(x[i:i + 200]) for i in range(0, len(x), 200)]))
    return (sum(a == t for a, t in zip(served, truth)) / len(truth),
            sum(a == t for a, t in zip(cleaned, truth)) / len(truth))


def usability(store, pool: str, sheets: Path | None) -> float | None:
    """A test pool's glyph-region SSIM (on colour where it is colour), and its contact sheet under `sheets` if given.

    On a warp pool SSIM scores every moved stroke as damage (benchmarks/warp_measures.py): the sheet says more.
    """
    stats = pool_stats(store, pool)
    if sheets:
        sheets.mkdir(parents=True, exist_ok=True)
        contact_sheet(pool_pairs(store, pool, 12), title=f"{pool} ({stats['family']})").save(sheets / f"{pool}.png")
    return stats.get("mean_ssim_glyph_colour", stats.get("mean_ssim_glyph"))


def make_pool(store, name: str, count: int, seed: int, version: str, processes: int) -> str:
    """A pool of `version`'s generation as `farm generate` makes it with no method options."""
    if name in pool_names(store) and read_manifest(store, name)["count"] >= count:
        count = read_manifest(store, name)["count"]  # a resumed run with fewer captchas uses the first of its pools
    started = time.perf_counter()
    summary = generate(name, count, store=store.url, seed=seed, version=version, processes=processes)
    if summary["generated"]:
        print(f"  pool {name}: {summary['generated']} captchas of family {read_manifest(store, name)['family']} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    return name


def run(args) -> None:
    quick = QUICK if args.quick else {}
    n_adapt = args.adapt or quick.get("adapt", 3000)
    n_answers = max(args.answers) if args.answers else quick.get("answers", 1000)
    n_test = args.test or quick.get("test", 250)
    bots = (args.bots or ",".join(BOTS[:1] if args.quick else BOTS)).split(",")
    for name in bots:
        if name not in ZOO or ZOO[name].role != HELD_OUT:
            raise SystemExit(f"--bots: {name} is not a held-out zoo solver ("
                             f"{', '.join(m for m in ZOO if ZOO[m].role == HELD_OUT)}); donors never judge")
    config = FinetuneConfig(**quick.get("finetune", {}), anticipate=args.anticipate)
    torch.set_num_threads(args.threads)
    otsu = parse_chains(["otsu"])[0]
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        store = LocalStore(root / "store")
        registry.ensure_current(store)
        bases = {name: "v1" for name in bots}  # the version whose generation each bot meets next
        bought = {name: [] for name in bots}  # the labelled pools each bot adapted on, round by round
        mode = scheme_mode("classic")  # the scheme `farm generate` makes pools of by default
        solvers = {name: load_member(name) for name in bots}
        rows, gains = [], {}
        for round_ in range(1, args.rounds + 1):
            for name in bots:
                base = bases[name]
                print(f"round {round_}, {name}: generation of {base} ({registry.family(store, base, mode)})",
                      flush=True)
                labelled = make_pool(store, f"{base}-adapt-r{round_}", n_adapt, ADAPT_SEED + round_, base,
                                     args.threads)
                bought[name].append(labelled)
                pools = bought[name] if args.remember else [labelled]
                answered = make_pool(store, f"{base}-answers-r{round_}", n_answers, ANSWER_SEED + round_, base,
                                     args.threads)
                out = root / "bots" / f"{name}-r{round_}{'-remember' if args.remember and round_ > 1 else ''}"
                started = time.perf_counter()
                if not (out / "card.json").exists():
                    adapt(solvers[name], store, pools, n_adapt * len(pools), out, steps=quick.get("adapt_steps", 600),
                          progress=False)
                adapted_s = time.perf_counter() - started
                bot = solvers[name] = load_solver_dir(out)
                answers = answer_pool(store, answered, bot, n_answers)
                key = ingest(store, "".join(json.dumps(r) + "\n" for r in answers["records"]).encode()).key
                registry.promote(store, base)  # this bot's lineage: its move publishes on top of its base
                started = time.perf_counter()
                made = made_move(store, base, answered)
                if made:  # a resumed run: this base's move from these answers is published already
                    new, result = made, card_result(registry.card(store, made))
                    move_s = result["seconds"]
                else:
                    try:
                        result = finetune(store, [key], base=base, config=config, progress=False)
                        new = result["version"]
                    except FinetuneRefused as refused:  # nothing published: the next generation is this one
                        result, new = refused.result, base
                    move_s = time.perf_counter() - started
                tests = [make_pool(store, f"{v}-test", n_test, TEST_SEED, v, args.threads) for v in (base, new)]
                on_base, on_new = (read(store, pool, bot, otsu) for pool in tests)
                ssim = [usability(store, pool, args.keep and root / "sheets") for pool in tests]
                row = {"round": round_, "bot": name, "base": base, "new": new, "answered": answers["accuracy"],
                       "adapted_on": bot.card["adapted"]["count"], "answers": answers["count"],
                       "gen_k": on_base, "gen_k1": on_new, "ssim": ssim, "family": result.get("family"),
                       "clean": (result["before"]["clean"].get("classic"), result["after"]["clean"].get("classic")),
                       "weights": result["weights"], "ensemble": result["ensemble"], "move_s": move_s,
                       "adapt_s": adapted_s}
                rows.append(row)
                print_row(row, flush=True)
                if round_ == 1:
                    gains[name] = 1 - on_new[0] / on_base[0] if on_base[0] else 0.0
                bases[name] = new
        print_table(rows)
    print(f"seconds: {time.perf_counter() - began:.0f}")
    print(f"adaptive_gain: {sum(gains.values()) / len(gains):.3f}")


def made_move(store, base: str, answered: str) -> str | None:
    """The version a move on top of `base` published from answers to pool `answered` (a resumed run), or None."""
    found = [v for v in registry.versions(store) if (c := registry.card(store, v)).get("parent") == base
             and (c.get("hardened_on") or {}).get("pools") == [answered]]
    return found[-1] if found else None


def card_result(card: dict) -> dict:
    """What a row needs of a move's result, read back from the card it published."""
    metrics, training = card["metrics"], card["training"]["finetune"]
    return {"family": card["family"], "weights": "trained" if training["best_step"] else "unchanged",
            "ensemble": card.get("ensemble") or [], "seconds": training["seconds"],
            "before": {"clean": metrics["accuracy_before"]}, "after": {"clean": metrics["accuracy"]}}


def _share(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ssim(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_row(r: dict, flush: bool = True) -> None:
    move = r["family"] or {}
    evidence = ", ".join(f"{k} {v:.1%}" for k, v in move.get("read", {}).items())
    print(f"  {r['bot']} round {r['round']} (adapted on {r['adapted_on']}, {r['answers']} answers): reads "
          f"{r['answered']:.1%} of its {r['base']} answers; move "
          f"{r['base']} -> {r['new']} ({r['weights']} weights, donors {','.join(r['ensemble']) or '-'}), family "
          f"{move.get('from')} -> {move.get('name')} (read: {evidence or '-'}), substitute clean "
          f"{_share(r['clean'][0])} -> {_share(r['clean'][1])}, move {r['move_s']:.0f} s, adapt {r['adapt_s']:.0f} s; "
          f"gen k {r['gen_k'][0]:.1%} / Otsu {r['gen_k'][1]:.1%}, gen k+1 {r['gen_k1'][0]:.1%} / Otsu "
          f"{r['gen_k1'][1]:.1%}; glyph SSIM gen k {_ssim(r['ssim'][0])}, gen k+1 {_ssim(r['ssim'][1])}", flush=flush)


def print_table(rows: list[dict]) -> None:
    print(f"\n{'round':>5} {'bot':14s} {'gen k':>5} {'served':>6} {'Otsu':>6} {'k+1':>4} {'served':>6} {'Otsu':>6} "
          f"{'family (read by the bot)':28s} {'substitute clean':>16} {'move s':>6} {'SSIM k+1':>8}")
    for r in rows:
        move = r["family"] or {}
        evidence = ", ".join(f"{k} {v:.0%}" for k, v in move.get("read", {}).items())
        family = f"{move.get('from')}->{move.get('name')} ({evidence})"
        print(f"{r['round']:>5} {r['bot']:14s} {r['base']:>5} {r['gen_k'][0]:>6.1%} {r['gen_k'][1]:>6.1%} "
              f"{r['new']:>4} {r['gen_k1'][0]:>6.1%} {r['gen_k1'][1]:>6.1%} {family:28s} "
              f"{_share(r['clean'][0]):>6} -> {_share(r['clean'][1]):<6} {r['move_s']:>6.0f} {_ssim(r['ssim'][1]):>8}")
