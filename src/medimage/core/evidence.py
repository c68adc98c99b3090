"""How much a test split can tell: confidence intervals and the paired comparison the gate relies on.

A figure measured on a few dozen images is a wide range, not a number: 35 of 40 pneumonia images found
(0.875) is compatible with a true recall anywhere from about 0.74 to 0.95. The gate therefore judges each
figure by its Wilson score interval, and compares two models on the same images with McNemar's exact test,
which looks only at the images the two models disagree on.

Pure: the standard library only (no scipy in the gate function's package).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

CONFIDENCE = 0.95
# The two-sided 95 % quantile of the standard normal distribution.
Z = 1.959963984540054
# McNemar's test calls a difference significant below this p-value (two-sided, the same 95 %).
ALPHA = 1.0 - CONFIDENCE
# Beyond this many images a split "would need", the answer is reported as this cap: more data will not
# settle a difference that small.
MAX_IMAGES = 10**9


@dataclass(frozen=True)
class Interval:
    """A proportion ``successes / n`` with its Wilson score interval at ``CONFIDENCE``."""

    successes: int
    n: int
    low: float
    high: float

    @property
    def rate(self) -> float:
        return self.successes / self.n

    def to_dict(self) -> dict[str, Any]:
        return {
            "successes": self.successes,
            "n": self.n,
            "rate": round(self.rate, 6),
            "low": round(self.low, 6),
            "high": round(self.high, 6),
        }


def wilson_bounds(rate: float, n: float, z: float = Z) -> tuple[float, float]:
    """The Wilson score interval of an observed ``rate`` on ``n`` trials (n may be fractional, so the
    interval can be asked for at a split size not yet collected). Unlike the normal (Wald) interval it
    stays inside 0..1 and does not collapse to a point at a rate of 0 or 1."""
    if n <= 0:
        raise ValueError(f"an interval needs at least one trial, got n={n}")
    z2 = z * z
    centre = (rate + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(rate * (1 - rate) / n + z2 / (4 * n * n))
    low = 0.0 if rate <= 0.0 else max(0.0, centre - half)
    high = 1.0 if rate >= 1.0 else min(1.0, centre + half)  # exact at the ends, not 0.9999999999999999
    return low, high


def wilson(successes: int, n: int) -> Interval:
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in 0..n, got {successes} of {n}")
    low, high = wilson_bounds(successes / n, n)
    return Interval(successes, n, low, high)


def n_to_fall_below(rate: float, floor: float) -> int:
    """The smallest number of trials at which the Wilson interval of ``rate`` lies wholly under ``floor``
    (the observed rate held fixed): how big a sample would show that a rate that low really is under the
    floor. ``rate`` must be under ``floor``."""
    if not rate < floor:
        raise ValueError(f"rate {rate} is not under floor {floor}")
    return _smallest_n(lambda n: wilson_bounds(rate, n)[1] < floor)


def n_to_clear(rate: float, floor: float) -> int:
    """The smallest number of trials at which the Wilson interval of ``rate`` lies wholly at or above
    ``floor`` (``rate`` held fixed and above the floor)."""
    if not rate > floor:
        raise ValueError(f"rate {rate} is not above floor {floor}")
    return _smallest_n(lambda n: wilson_bounds(rate, n)[0] >= floor)


def _smallest_n(decides: Any) -> int:
    """The smallest integer n >= 1 for which ``decides(n)`` holds, for a condition that, once true, stays
    true as n grows (a Wilson bound moves monotonically towards the fixed rate); ``MAX_IMAGES`` if none."""
    if decides(1):
        return 1
    high = 2
    while not decides(high):
        if high >= MAX_IMAGES:
            return MAX_IMAGES
        high = min(high * 2, MAX_IMAGES)
    low = high // 2  # decides(low) is false
    while high - low > 1:
        middle = (low + high) // 2
        if decides(middle):
            high = middle
        else:
            low = middle
    return high


def binomial_tail(k: int, m: int) -> float:
    """P(X <= k) for X ~ Binomial(m, 1/2), summed in log space from k downwards until the terms no longer
    matter (they shrink geometrically below the mean), so it is fast for millions of trials too."""
    if k < 0:
        return 0.0
    if k >= m:
        return 1.0
    if 2 * k > m:
        return 1.0 - binomial_tail(m - k - 1, m)
    log_half_m = m * math.log(0.5)
    log_term = math.lgamma(m + 1) - math.lgamma(k + 1) - math.lgamma(m - k + 1) + log_half_m
    term = math.exp(log_term)
    total = term
    i = k
    while i > 0 and term > total * 1e-17:
        term *= i / (m - i + 1)  # C(m, i-1) / C(m, i)
        total += term
        i -= 1
    return min(1.0, total)


def mcnemar_p(wins: int, losses: int) -> float:
    """McNemar's exact two-sided p-value: on the images where exactly one of two models is right, is the
    split ``wins`` : ``losses`` plausible for two equally good models (a fair coin per disagreement)?"""
    if wins < 0 or losses < 0:
        raise ValueError("counts of discordant pairs cannot be negative")
    m = wins + losses
    if m == 0:
        return 1.0
    return min(1.0, 2.0 * binomial_tail(min(wins, losses), m))


@dataclass(frozen=True)
class PairedComparison:
    """Two models on the same ``n`` images: ``wins`` where only the challenger is right, ``losses`` where
    only the champion is. The accuracy difference is (wins - losses) / n; its interval is conditional on
    the number of disagreements (the Wilson interval of the challenger's share of them)."""

    n: int
    wins: int
    losses: int

    @property
    def discordant(self) -> int:
        return self.wins + self.losses

    @property
    def difference(self) -> float:
        return (self.wins - self.losses) / self.n

    @property
    def p_value(self) -> float:
        return mcnemar_p(self.wins, self.losses)

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA

    def difference_interval(self) -> tuple[float, float]:
        if self.discordant == 0:
            return 0.0, 0.0
        share = wilson(self.wins, self.discordant)
        scale = self.discordant / self.n
        return scale * (2 * share.low - 1), scale * (2 * share.high - 1)

    def images_to_decide(self) -> int | None:
        """The split size at which the observed difference (the same shares of wins and losses per image)
        would be significant; None when the models never disagree (no size would separate them)."""
        if self.wins == self.losses:
            return None if self.discordant == 0 else MAX_IMAGES
        if self.significant:
            return self.n
        share = self.wins / self.discordant

        def decides(m: int) -> bool:
            wins = round(share * m)
            return mcnemar_p(wins, m - wins) < ALPHA

        discordant_needed = _smallest_n(decides)
        return min(MAX_IMAGES, math.ceil(discordant_needed * self.n / self.discordant))

    def to_dict(self) -> dict[str, Any]:
        low, high = self.difference_interval()
        return {
            "test": "mcnemar_exact",
            "n": self.n,
            "challenger_only_right": self.wins,
            "champion_only_right": self.losses,
            "difference": round(self.difference, 6),
            "difference_low": round(low, 6),
            "difference_high": round(high, 6),
            "p_value": round(self.p_value, 6),
            "significant": self.significant,
        }


def paired(
    truth: tuple[int, ...], challenger: tuple[int, ...], champion: tuple[int, ...]
) -> PairedComparison:
    """Count the disagreements of two models' predicted classes on the same images, in the same order."""
    if not len(truth) == len(challenger) == len(champion) or not truth:
        raise ValueError(
            f"paired results need the same images: {len(truth)} labels, {len(challenger)} and "
            f"{len(champion)} predictions"
        )
    wins = sum(1 for t, a, b in zip(truth, challenger, champion, strict=True) if a == t and b != t)
    losses = sum(1 for t, a, b in zip(truth, challenger, champion, strict=True) if a != t and b == t)
    return PairedComparison(len(truth), wins, losses)
