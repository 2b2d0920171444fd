"""The seed's claims (its results page), each as two arms to train and a rule to judge them by.

An arm is a list of training overrides, normally one preset of conf/experiment/. Every claim is
measured in its own regime (the overrides under which its effect is expected to show: an overfitting
subset for augmentation, a deep narrow model for the initialisations, a late constant-LR phase for
SWA), applied to both its arms. A claim compares a treatment arm against a reference arm, seed by seed
(the same seed gives both arms the same data order), on a validation metric (lower is better).

How a difference is judged: the paired differences d = treatment - reference over the seeds count as
a real difference when every seed agrees on the sign and |mean d| is more than two standard errors
(sd(d) / sqrt(n)). With one seed there is no spread, so nothing can be told from noise.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

EQUAL_LOSS_TOLERANCE = 0.01  # "without affecting the loss": within 1% of the reference (or its noise)
SPEEDUP_CLAIMED = 3.0        # "three times faster"; confirmed from 2.7x (10% short of it)


@dataclass(frozen=True)
class Arm:
    name: str                     # its run folders: <out>/<regime>/<name>/seed<N>
    overrides: tuple[str, ...]    # training overrides (Hydra syntax)
    short: bool = False           # trained with the short budget (--short-steps): bf16 speed on a CPU depends on it


@dataclass(frozen=True)
class Regime:
    """Overrides for both arms of a claim; {subset}, {rest}, {depth}, {width}, {steps} come from run.py's options."""
    name: str                     # run folders: <out>/<regime>/<arm>/seed<N> (claims of one regime share arms)
    text: str                     # the regime in words, for RESULTS.md
    overrides: tuple[str, ...] = ()
    steps_factor: float = 1.0     # its runs train round(steps_factor * --steps) steps
    short: bool = False           # its runs train --short-steps instead


DEFAULT = Regime("default", "the arms' model and data as given (default model=small, Bach), {steps} steps")
# Augmentation fights overfitting: a small training subset (--subset of the chorales) and no dropout,
# trained long enough for the baseline's validation curve to turn up. The files cut from training go
# to an "unused" split placed before val and test, so these keep exactly the default regime's files.
OVERFIT = Regime("overfit", "a {subset:.0%} training subset, no dropout, {steps} steps",
                 ("~data.splits", "+data.splits={{train:{subset},unused:{rest},val:0.05,test:0.05}}",
                  "model.dropout=0.0"), 2.0)  # a new key in a struct node: removed and added again
# Initialisation matters with depth: a narrow model of --depth blocks (GPT-2's and T-Fixup's scalings
# are functions of n_layer).
DEEP = Regime("deep", "a narrow deep model: {depth} blocks of width {width}, 2 heads, {steps} steps",
              ("model.n_layer={depth}", "model.d_model={width}", "model.n_head=2"))
# SWA as swa_utils intends: a long run whose second half holds a constant learning rate (SWALR) while
# the average is taken; judged against the same run's final (not averaged) weights.
SWA_PHASE = Regime("swa_phase", "{steps} steps; from half-way a constant lr 5e-4 (SWALR), averaged every 5 steps",
                   ("optim/swa=on", "optim.swa.start_step=0.5", "optim.swa.swa_lr=5.0e-4",
                    "optim.swa.anneal_steps=20", "optim.swa.update_every=5"), 2.0)
SHORT = Regime("short", "{steps} steps (--short-steps: bf16 autocast is slow on a CPU)", short=True)


@dataclass(frozen=True)
class Claim:
    name: str
    statement: str                # the seed's words
    reference: Arm
    treatment: Arm
    kind: str                     # tried (the seed states no result) | better | same_loss_faster | averaging
    regime: Regime = DEFAULT      # where it is measured: overrides for both arms
    at_scale: str = ""            # one line: what would change the verdict at research scale
    treatment_metric: str = "best_val_bits_per_event"
    reference_metric: str = "best_val_bits_per_event"
    context: tuple[Arm, ...] = ()  # arms trained and drawn beside the two, not judged
    curve_keys: tuple[str, ...] = ("val/bits_per_event",)  # what its PNG draws: a line per arm and key


BASELINE = Arm("baseline", ("experiment=baseline",))
SWA_RUN = Arm("swa", ("experiment=baseline",))  # the regime turns SWA on; both metrics come from this run


def _preset(name: str, short: bool = False) -> Arm:
    return Arm(name, (f"experiment={name}",), short)


CLAIMS = [
    Claim("weight_scaling", "The list of conducted experiments includes weight scaling", BASELINE,
          _preset("weight_scaling"), "tried", DEEP,
          "at 12-48 blocks of width 512+ an unscaled residual stream grows with depth: the gap should widen",
          context=(Arm("baseline_no_warmup", ("experiment=baseline", "optim.warmup_steps=0")),)),
    Claim("tfixup", "... T-Fixup initialization", BASELINE, _preset("tfixup"), "tried", DEEP,
          "T-Fixup's point is training deep post-norm stacks without warm-up at a large lr; a 2-core budget "
          "cannot reach the instability it removes",
          context=(Arm("baseline_no_warmup", ("experiment=baseline", "optim.warmup_steps=0")),)),
    Claim("swa", "... Stochastic Weight Averaging (SWA)", SWA_RUN, SWA_RUN, "averaging", SWA_PHASE,
          "SWA's gain grows with the length of the averaged phase (epochs, not hundreds of steps)",
          treatment_metric="final_swa_val_bits_per_event", reference_metric="final_val_bits_per_event",
          curve_keys=("val/bits_per_event", "val/swa/bits_per_event")),
    Claim("scalenorm", "... Scalenorm", BASELINE, _preset("scalenorm"), "tried", DEFAULT,
          "Nguyen & Salazar's gains were in low-resource translation at 6+ layers; a longer run may separate them"),
    Claim("fixnorm", "... and Fixnorm", BASELINE, _preset("fixnorm"), "tried", DEFAULT,
          "FixNorm constrains the embeddings; its effect on rare tokens needs a larger vocabulary share and corpus"),
    Claim("mixed_precision", "the one with mixed precision was three times faster without affecting the loss",
          Arm("fp32_short", ("experiment=baseline", "trainer/precision=fp32"), short=True),
          _preset("mixed_precision", short=True), "same_loss_faster", SHORT,
          "the speed-up needs tensor cores (a GPU); the loss should stay equal at any scale"),
    Claim("embedding_init", "adjusting the embedding initialization to PyTorch's default function, "
          "nn.Embedding(). Consequently, the validation curve was improved by 2%",
          _preset("embedding_scaled"), _preset("embedding_pytorch"), "better", DEFAULT,
          "with tied or much wider embeddings the init's scale matters less as training lengthens"),
    Claim("augmentation", "various data augmentation techniques were applied, resulting in another "
          "significant decrease in the validation curve", BASELINE, _preset("augmentation"), "better", OVERFIT,
          "on a corpus large enough not to overfit within the budget the gain shrinks (or turns into a cost)",
          curve_keys=("val/bits_per_event", "train/bits_per_event")),
]


@dataclass
class Comparison:
    reference: list[float]        # per seed, in seed order
    treatment: list[float]

    @property
    def diffs(self) -> list[float]:
        return [t - r for t, r in zip(self.treatment, self.reference)]

    @property
    def mean_diff(self) -> float:
        return statistics.fmean(self.diffs)

    @property
    def stderr(self) -> float | None:
        return statistics.stdev(self.diffs) / math.sqrt(len(self.diffs)) if len(self.diffs) > 1 else None

    @property
    def relative(self) -> float:
        """The mean difference as a share of the reference (negative: the treatment is better)."""
        return self.mean_diff / statistics.fmean(self.reference)

    def direction(self) -> str | None:
        """better | worse | no clear difference; None with one seed (no spread to judge by)."""
        if self.stderr is None:
            return None
        beyond_noise = abs(self.mean_diff) > 2 * self.stderr
        if beyond_noise and all(d < 0 for d in self.diffs):
            return "better"
        if beyond_noise and all(d > 0 for d in self.diffs):
            return "worse"
        return "no clear difference"


def verdict(claim: Claim, comparison: Comparison, speedup: float | None, device: str,
            overfit: float | None = None) -> str:
    """confirmed / not confirmed / not measurable here, with the reason in a few words.

    overfit: the reference's final minus best validation bits/event, mean over seeds; a claim against
    overfitting (the OVERFIT regime) can only show where it is above 0 (the curve turned up)."""
    relative = f"{comparison.relative:+.1%}"
    direction = comparison.direction()
    if claim.kind in ("tried", "averaging"):
        than = "the same runs' final weights" if claim.kind == "averaging" else "the baseline"
        here = {None: "one seed, no spread to judge by", "better": f"better than {than} ({relative})",
                "worse": f"worse than {than} ({relative})"}.get(direction, f"no clear difference ({relative})")
        return f"nothing claimed to check; here: {here}"
    if claim.regime is OVERFIT and overfit is not None and overfit <= 0:
        return f"not measurable here: the baseline did not overfit (final - best val {overfit:+.3f}); more --steps"
    if claim.kind == "better":
        if direction is None:
            return f"not measurable here: one seed, no spread ({relative})"
        if direction == "better":
            return f"confirmed: {relative} bits/event, every seed better"
        return f"not confirmed: {direction} ({relative})"
    return f"{_equal_loss(comparison)}; {_speed(speedup, device)}"


def _equal_loss(comparison: Comparison) -> str:
    tolerance = max(EQUAL_LOSS_TOLERANCE * statistics.fmean(comparison.reference), 2 * (comparison.stderr or 0.0))
    if abs(comparison.mean_diff) <= tolerance:
        return f"same loss: confirmed ({comparison.relative:+.2%})"
    return f"same loss: not confirmed ({comparison.relative:+.2%})"


def _speed(speedup: float | None, device: str) -> str:
    if speedup is None:
        return "speed: not measured"
    if not device.startswith("cuda"):
        return f"3x faster: not measurable here (needs a GPU; on this CPU: {speedup:.2f}x the fp32 events/s)"
    if speedup >= 0.9 * SPEEDUP_CLAIMED:
        return f"3x faster: confirmed ({speedup:.1f}x events/s)"
    return f"3x faster: not confirmed ({speedup:.1f}x events/s on {device})"


# --- the claim about samples: measured on continuations of held-out primers -------------------------

@dataclass(frozen=True)
class ContinuationClaim:
    """The seed's closing claim, on what its samples do after the whistle. Measured on continuations of
    held-out primers (generate/scoring.py): the trained `arm`'s, against the real continuations of the
    same songs and against an untrained model of the same shape. Each metric is judged by its distance to
    the real continuation's value, paired by seed: the untrained model's distance is the reference."""
    name: str
    statement: str
    arm: Arm                      # whose final checkpoints continue the primers (trained in `regime`)
    metrics: tuple[str, ...]      # rows of the continuation summary (generate/scoring.py ROWS)
    regime: Regime = DEFAULT
    at_scale: str = ""


CONTINUATION = ContinuationClaim(
    "continuation", "the transformer can reliably produce chords and learn the timing from the seed", BASELINE,
    ("chord_rate", "onset_grid_distance_to_primer"), DEFAULT,
    "a longer-trained model should approach the real continuations; four-part chorales make chords the norm")


def continuation_verdict(comparisons: dict[str, Comparison]) -> str:
    """confirmed when the trained model is closer to the real continuations than the untrained one on
    every metric, every seed agreeing, beyond two standard errors."""
    directions = {metric: comparison.direction() for metric, comparison in comparisons.items()}
    if None in directions.values():
        return "not measurable here: one seed, no spread to judge by"
    closer = [metric for metric, direction in directions.items() if direction == "better"]
    if len(closer) == len(directions):
        return f"confirmed: closer to the real continuations than an untrained model on {', '.join(closer)}"
    others = ", ".join(f"{metric} {directions[metric]}" for metric in directions if metric not in closer)
    return f"not confirmed: {others}" + (f" (closer on {', '.join(closer)})" if closer else "")
