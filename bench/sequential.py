"""Seeds until decided: a study that looks at its headline after every round of seeds and stops when it is decided.

Looking after every round and stopping at the first call would call a null study far more often than
alpha (five looks at 0.05 each: about 14% for Gaussian seeds). So every look of a ``stop: decided`` study
tests at Pocock's constant nominal level for its planned number of looks (Pocock 1977; Jennison & Turnbull
2000, Table 2.1), which holds the overall two-sided error at alpha over all looks together; a ``stop:
interaction`` study (two pairs) looks the same way at their interaction, the same rule on its per-seed series. A ``stop:
halfwidth`` study stops on the interval's width, which does not depend on the sign of the effect, and
tests at alpha at the look where it stops. tests/bench/test_sequential_calibration.py checks both by
simulation with the verdict's own rule, in the same worlds as the fixed-size calibration.
"""

from __future__ import annotations

# Pocock's nominal two-sided level per look for an overall 0.05, by the number of planned looks
POCOCK_05 = {1: 0.05, 2: 0.0294, 3: 0.0221, 4: 0.0182, 5: 0.0158, 6: 0.0142, 7: 0.0130, 8: 0.0120, 9: 0.0112,
             10: 0.0106, 11: 0.0101, 12: 0.0097, 13: 0.0093, 14: 0.0089, 15: 0.0086, 16: 0.0083, 17: 0.0080,
             18: 0.0078, 19: 0.0076, 20: 0.0075}
MAX_LOOKS = max(POCOCK_05)


def look_sizes(seeds: int, start: int, step: int) -> list[int]:
    """The seed counts at which a study looks: start, start + step, ..., and always the last (all seeds)."""
    sizes = list(range(min(start, seeds), seeds, step))
    return [*sizes, seeds] if not sizes or sizes[-1] != seeds else sizes


def look_alpha(alpha: float, looks: int, stop: str) -> float:
    """The level each look tests at: Pocock's for ``stop: decided`` and ``stop: interaction`` (the table is for
    an overall 0.05; another alpha is scaled in proportion, an approximation the docs state), alpha itself for
    ``stop: halfwidth``."""
    if stop == "halfwidth" or looks <= 1:
        return alpha
    return POCOCK_05[looks] * alpha / 0.05


def should_stop(calls_and_widths: list[tuple[str, float | None]], stop: str, halfwidth: float | None) -> bool:
    """Every verdict pair's headline (its call, its interval half-width) meets the stopping rule."""
    if not calls_and_widths:
        return False
    if stop in ("decided", "interaction"):  # the interaction's call is passed in as supported / contradicted
        return all(call in ("supported", "contradicted") for call, _ in calls_and_widths)
    return all(width is not None and halfwidth is not None and width <= halfwidth for _, width in calls_and_widths)
