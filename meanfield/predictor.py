"""A geometric predictor of output collapse, written down before the runs that test it.

The seed paper (Wojtowytsch & E, docs/science.md §3.1-§3.3) proves that a shallow head does not
collapse its output when the classes it is fed are not "geometrically nice", and suggests that the
same holds for a pre-trained network with a few layers added at its output: *if the classes are
not nice two layers before the output, they do not collapse in the output*. "Nice" fails in two
precise ways, each a theorem of the paper for a two-layer head:

- **enclosure** (§3.2, "geometry 2"): a class meets the convex hull of another (here: some
  sample of one class lies inside the convex hull of another class's samples). Then the output is
  not constant on the enclosing class;
- **separable + homogeneous activation** (§3.3, "geometry 1"): every pair of classes is linearly
  separable and the head's activation is positively homogeneous (ReLU, leaky ReLU). Then the
  max-margin limit is a continuum of classifiers none of which is constant on a class of more
  than one point (and with weight decay the regularisation path tends to it).

THE RULE (fixed in this file before the validation grid was run; the commit history shows it):

    predict_collapse(geometry, activation, regime) =
        False  if geometry.enclosed                                  (§3.2)
        False  if geometry.separable and activation is homogeneous   (§3.3)
        True   otherwise (nice geometry: the simplex optimum of §3.1 is reachable)

``regime`` (``bounded``: weight decay > 0; ``unbounded``: none; ``direction``) is carried into the
prediction and its reason, but the seed's two failure modes hold in every regime, so it does not
change the verdict; what it changes is the *statistic* the prediction is compared with
(:func:`output_statistic`): NC1 of the head's outputs in the bounded regime, the absolute output
spread in the unbounded one, the spread over the gap of the nearest class means in the direction
regime, all against the threshold 0.05 of the ``collapse`` experiment.

The degenerate case. With a few hundred samples per class in tens of dimensions, sample hulls
rarely contain other classes' samples and pairs are usually separable, so the rule reduces to
"homogeneous activation => no collapse". :func:`activation_only` is that baseline; :func:`score`
reports the confusion matrix, accuracy, balanced accuracy and base rates of both side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

__all__ = ["HOMOGENEOUS", "THRESHOLD", "RULE", "Prediction", "is_homogeneous", "predict_collapse",
           "activation_only", "output_statistic", "output_collapsed", "score"]

#: activations the §3.3 argument covers (positively 1-homogeneous, sigma(c z) = c sigma(z), c > 0)
HOMOGENEOUS = ("relu", "leaky_relu", "abs", "linear")
#: the statistic's threshold called "collapsed" (the ``collapse`` experiment's)
THRESHOLD = 0.05
RULE = ("no collapse if a class has samples inside another class's convex hull (§3.2), or if every "
        "pair of classes is linearly separable and the head's activation is positively homogeneous "
        "(§3.3); collapse otherwise")
_REGIMES = ("bounded", "unbounded", "direction")
_STATISTIC = {"bounded": "nc1_out", "unbounded": "spread", "direction": "spread_rel"}


def is_homogeneous(activation: str) -> bool:
    """Whether the §3.3 (max-margin continuum) argument applies to this activation."""
    if not isinstance(activation, str) or not activation:
        raise ValueError(f"activation must be a registered name (relu, tanh, ...), got {activation!r}")
    return activation.lower().replace("-", "_") in HOMOGENEOUS


def _regime(regime: str) -> str:
    if regime not in _REGIMES:
        raise ValueError(f"unknown regime {regime!r}; valid: {', '.join(_REGIMES)} (bounded: weight "
                         "decay > 0, unbounded: none)")
    return regime


@dataclass(frozen=True)
class Prediction:
    """The predictor's verdict for one (geometry, activation, regime).

    Attributes:
        collapse: True when output collapse is predicted.
        reason: one line: which failure of "nice" (or none) decided it.
        enclosed: some class has samples inside another class's convex hull.
        separable: every pair of classes is linearly separable.
        homogeneous: the head's activation is positively homogeneous.
        regime: bounded, unbounded or direction.
        max_inside: the largest fraction of one class's samples inside another's hull.
        min_margin: the smallest pairwise separation margin (<= 0 where a pair is not separable).
    """

    collapse: bool
    reason: str
    enclosed: bool
    separable: bool
    homogeneous: bool
    regime: str
    max_inside: float = float("nan")
    min_margin: float = float("nan")

    def as_dict(self) -> dict:
        """Flat numbers for a summary (``predicted_collapse``, ``geometry_enclosed``, ...)."""
        return {"predicted_collapse": bool(self.collapse), "geometry_enclosed": bool(self.enclosed),
                "geometry_separable": bool(self.separable), "head_homogeneous": bool(self.homogeneous),
                "geometry_max_inside": float(self.max_inside),
                "geometry_min_margin": float(self.min_margin)}


def predict_collapse(geometry, activation: str, regime: str = "bounded") -> Prediction:
    """THE RULE (module docstring) applied to a :class:`meanfield.geometry.ClassGeometry`.

    Args:
        geometry: the class geometry of the head's input features (``enclosed``, ``separable``
            and ``pairs`` with ``frac_a_in_b``, ``frac_b_in_a``, ``margin``).
        activation: the head's activation name.
        regime: ``bounded`` (weight decay > 0), ``unbounded`` or ``direction``.

    Returns:
        :class:`Prediction`.
    """
    regime = _regime(regime)
    hom = is_homogeneous(activation)
    enclosed, separable = bool(geometry.enclosed), bool(geometry.separable)
    pairs = tuple(getattr(geometry, "pairs", ()))
    inside = max((max(p.frac_a_in_b, p.frac_b_in_a) for p in pairs), default=float("nan"))
    margin = min((p.margin for p in pairs), default=float("nan"))
    if enclosed:
        worst = max(pairs, key=lambda p: max(p.frac_a_in_b, p.frac_b_in_a)) if pairs else None
        why = ("enclosed: " + worst.verdict) if worst is not None else "enclosed"
        coll = False
    elif separable and hom:
        why, coll = f"every pair separable and {activation} is homogeneous (max-margin continuum)", False
    else:
        why = ("nice geometry: no class inside another's hull"
               + ("" if separable else ", some pair not linearly separable")
               + f", {activation} head")
        coll = True
    return Prediction(coll, f"{why} [{regime} regime]", enclosed, separable, hom, regime,
                      float(inside), float(margin))


def activation_only(activation: str) -> bool:
    """The baseline the rule must beat: collapse predicted iff the activation is not homogeneous."""
    return not is_homogeneous(activation)


def output_statistic(summary: Mapping[str, float], regime: str) -> float:
    """The head's output statistic of the regime: nc1_out, spread or spread_rel (see above)."""
    key = _STATISTIC[_regime(regime)]
    if key not in summary:
        raise ValueError(f"the summary has no {key!r} (the output statistic of the {regime} regime); "
                         "run the head through meanfield.experiments.collapse")
    return float(summary[key])


def output_collapsed(summary: Mapping[str, float], regime: str,
                     threshold: float = THRESHOLD) -> Optional[bool]:
    """Whether the head's output collapsed (statistic below the threshold); None when undefined."""
    v = output_statistic(summary, regime)
    return None if not math.isfinite(v) else bool(v < threshold)


def score(predicted: Sequence[bool], measured: Sequence[Optional[bool]]) -> dict:
    """Confusion matrix and accuracies of predictions against measured collapse.

    Points where the measurement is None (undefined statistic) are left out and counted.

    Returns:
        ``{"tp", "fp", "tn", "fn", "n", "undefined", "accuracy", "balanced_accuracy",
        "base_rate_collapsed", "predicted_rate"}`` (``tp``: collapse predicted and measured).
    """
    if len(predicted) != len(measured):
        raise ValueError(f"{len(predicted)} predictions but {len(measured)} measurements")
    tp = fp = tn = fn = und = 0
    for p, m in zip(predicted, measured):
        if m is None:
            und += 1
            continue
        if p and m:
            tp += 1
        elif p:
            fp += 1
        elif m:
            fn += 1
        else:
            tn += 1
    n = tp + fp + tn + fn
    nan = float("nan")
    tpr = tp / (tp + fn) if tp + fn else nan
    tnr = tn / (tn + fp) if tn + fp else nan
    bal = (tpr + tnr) / 2 if tp + fn and tn + fp else (tpr if tp + fn else tnr)
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "n": n, "undefined": und,
            "accuracy": (tp + tn) / n if n else nan, "balanced_accuracy": bal,
            "base_rate_collapsed": (tp + fn) / n if n else nan,
            "predicted_rate": (tp + fp) / n if n else nan}
