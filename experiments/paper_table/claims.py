"""The seed's claims (its results page), each as two arms to train and a rule to judge them by.

An arm is a list of training overrides, normally one preset of conf/experiment/. Every claim compares
a treatment arm against a reference arm, seed by seed (the same seed gives both arms the same data
order), on the best validation bits/event of each run (lower is better).

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
    name: str                     # its run folders: <out>/<name>/seed<N>
    overrides: tuple[str, ...]    # training overrides (Hydra syntax)
    short: bool = False           # trained with the short budget (--short-steps): bf16 on a CPU is ~25x slower


@dataclass(frozen=True)
class Claim:
    name: str
    statement: str                # the seed's words
    reference: Arm
    treatment: Arm
    kind: str                     # tried (the seed states no result) | better | same_loss_faster
    treatment_metric: str = "best_val_bits_per_event"


BASELINE = Arm("baseline", ("experiment=baseline",))


def _preset(name: str, short: bool = False) -> Arm:
    return Arm(name, (f"experiment={name}",), short)


CLAIMS = [
    Claim("weight_scaling", "The list of conducted experiments includes weight scaling", BASELINE,
          _preset("weight_scaling"), "tried"),
    Claim("tfixup", "... T-Fixup initialization", BASELINE, _preset("tfixup"), "tried"),
    Claim("swa", "... Stochastic Weight Averaging (SWA)", BASELINE, _preset("swa"), "tried",
          treatment_metric="best_swa_val_bits_per_event"),
    Claim("scalenorm", "... Scalenorm", BASELINE, _preset("scalenorm"), "tried"),
    Claim("fixnorm", "... and Fixnorm", BASELINE, _preset("fixnorm"), "tried"),
    Claim("mixed_precision", "the one with mixed precision was three times faster without affecting the loss",
          Arm("fp32_short", ("experiment=baseline", "trainer/precision=fp32"), short=True),
          _preset("mixed_precision", short=True), "same_loss_faster"),
    Claim("embedding_init", "adjusting the embedding initialization to PyTorch's default function, "
          "nn.Embedding(). Consequently, the validation curve was improved by 2%",
          _preset("embedding_scaled"), _preset("embedding_pytorch"), "better"),
    Claim("augmentation", "various data augmentation techniques were applied, resulting in another "
          "significant decrease in the validation curve", BASELINE, _preset("augmentation"), "better"),
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


def verdict(claim: Claim, comparison: Comparison, speedup: float | None, device: str) -> str:
    """confirmed / not confirmed / not measurable here, with the reason in a few words."""
    relative = f"{comparison.relative:+.1%}"
    direction = comparison.direction()
    if claim.kind == "tried":
        here = {None: "one seed, no spread to judge by", "better": f"better than the baseline ({relative})",
                "worse": f"worse than the baseline ({relative})"}.get(direction, f"no clear difference ({relative})")
        return f"nothing claimed to check; here: {here}"
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
