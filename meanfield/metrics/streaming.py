"""Streaming collapse metrics: features batch by batch, two passes, memory independent of n.

Pass 1 accumulates per class the sample count, the mass and the mass-weighted feature sum (and the
OOD mean); :meth:`NCAccumulator.next_pass` turns them into the class means and the C x C geometry
(the eigenbasis of the centred-means Gram the pseudo-inverse needs). Pass 2 accumulates, through
docs/science.md §1's identity

.. math::

    \\mathrm{NC1} = \\sum_j p_j \\big\\|\\tilde M^+ (h_j - \\mu_{y_j})\\big\\|^2,

the NC1 sum from the (n_batch, C) inner products ``<h_j - mu_{y_j}, m~_c>``, the within-class sums
of squares per class (nc1_trace, cdnv) and the nc4 mismatch mass (with the classifier). The state is
O(C q) numbers on the features' device whatever the number of samples.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
from torch import Tensor

from .assemble import SampleSums, finish, geometry, sample_sums
from .core import (NCMetrics, as_features, check_classes, check_labels, check_strict, check_weights,
                   classifier as _classifier, default_rtol, too_narrow)


class NCAccumulator:
    """Two-pass accumulator of the collapse metrics (the same result as :func:`neural_collapse`).

    Example::

        acc = NCAccumulator(num_classes=10, classifier=W, bias=b)
        for h, y in loader():            # pass 1: class masses and sums
            acc.update(h, y)
        acc.next_pass()                  # class means, the C x C geometry
        for h, y in loader():            # pass 2: the same samples again
            acc.update(h, y)
        metrics = acc.result()

    Args:
        num_classes: C (labels lie in 0..C-1; every class needs samples with positive mass).
        classifier ((C, p) or (1, p) Tensor): W, as :func:`neural_collapse` (needed in pass 2 only).
        bias ((C,) Tensor): its bias.
        rtol: relative eigenvalue cutoff of the rank check (default 100 C eps of the features' dtype).
        strict: as :func:`neural_collapse`.

    Weights passed to :meth:`update` are relative masses: they are divided by the total mass of
    pass 1, so pass 2 must see the same samples with the same weights (the sample counts per class
    are checked).
    """

    def __init__(self, num_classes: int, *, classifier=None, bias=None, rtol: Optional[float] = None,
                 strict: Optional[bool] = None):
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2; got {num_classes!r}")
        check_strict(strict)
        if bias is not None and classifier is None:
            raise ValueError("a bias was given without a classifier; pass classifier=W too")
        self.C = int(num_classes)
        self._classifier, self._bias, self._rtol, self._strict = classifier, bias, rtol, strict
        self.pass_ = 1
        self._count = self._count2 = None
        self._sums: Optional[Tensor] = None
        self._ood_sum = self._ood_mass = None
        self._acc: Optional[SampleSums] = None
        self._geo = None

    # ------------------------------------------------------------------ feeding
    def _batch(self, features, labels, weights):
        H = as_features(features)
        if self._sums is not None:
            if H.shape[1] != self._sums.shape[1]:
                raise ValueError(f"shape mismatch: features have {H.shape[1]} columns, earlier "
                                 f"batches {self._sums.shape[1]}")
            H = H.to(dtype=self._sums.dtype, device=self._sums.device)
        y = check_labels(labels, H.shape[0], self.C, device=H.device)
        if weights is None:
            w = torch.ones(H.shape[0], dtype=H.dtype, device=H.device)
        else:
            w = torch.as_tensor(weights, device=H.device).to(H.dtype)
            if w.shape != (H.shape[0],):
                raise ValueError(f"shape mismatch: {H.shape[0]} samples but weights of shape {tuple(w.shape)}")
            if not torch.isfinite(w).all() or (w < 0).any():
                raise ValueError("weights must be finite and non-negative")
        return H, y, w

    def update(self, features, labels, weights=None) -> "NCAccumulator":
        """Add a batch to the current pass.

        Args:
            features ((b, p) Tensor): features of the batch.
            labels ((b,) int Tensor): their classes.
            weights ((b,) Tensor): relative masses (default 1 per sample).
        """
        H, y, w = self._batch(features, labels, weights)
        if self.pass_ == 1:
            if self._sums is None:
                q = H.shape[1]
                self._sums = H.new_zeros(self.C, q)
                self._mass = H.new_zeros(self.C)
                self._count = torch.zeros(self.C, dtype=torch.long, device=H.device)
            self._sums.index_add_(0, y, w[:, None] * H)
            self._mass.index_add_(0, y, w)
            self._count += torch.bincount(y, minlength=self.C)
            return self
        geo, p = self._geo, w / self._total
        D = H - geo.Mu[y]
        S = H @ geo.Mu.T
        logits = None if self._W is None else H @ self._W.T + (self._b if self._b is not None else 0)
        part = sample_sums(geo, D @ geo.Mt.T, (D ** 2).sum(1), S, logits, y, p)
        self._acc = part if self._acc is None else self._acc + part
        self._count2 += torch.bincount(y, minlength=self.C)
        return self

    def update_ood(self, features, weights=None) -> "NCAccumulator":
        """Add out-of-distribution features (pass 1 only), for nc5."""
        if self.pass_ != 1:
            raise ValueError("update_ood belongs to pass 1 (before next_pass())")
        O = as_features(features, "ood_features")
        w = check_weights(weights, O.shape[0], dtype=O.dtype, device=O.device, name="ood_weights") \
            if weights is not None else torch.ones(O.shape[0], dtype=O.dtype, device=O.device)
        s, m = (w[:, None] * O).sum(0), w.sum()
        self._ood_sum = s if self._ood_sum is None else self._ood_sum + s.to(self._ood_sum)
        self._ood_mass = m if self._ood_mass is None else self._ood_mass + m.to(self._ood_mass)
        return self

    # ------------------------------------------------------------------ passes
    def next_pass(self) -> "NCAccumulator":
        """End pass 1: class means and the geometry of the means (raises as :func:`neural_collapse`)."""
        if self.pass_ != 1:
            raise ValueError("next_pass() was already called; feed pass 2 and call result()")
        if self._sums is None:
            raise ValueError("no samples: call update() with the batches of pass 1 first")
        check_classes(self._count, self._mass)
        self._total = self._mass.sum()
        q, dt, dev = self._sums.shape[1], self._sums.dtype, self._sums.device
        if self._strict and self.C - 1 > q:
            raise ValueError(too_narrow(self.C, q))
        Mu = self._sums / self._mass[:, None]
        self._W, self._b = _classifier(self._classifier, self._bias, self.C, q, dtype=dt, device=dev)
        mu_ood = None
        if self._ood_sum is not None:
            if self._ood_sum.shape != (q,):
                raise ValueError(f"shape mismatch: ood_features have {self._ood_sum.shape[0]} columns, "
                                 f"features {q}")
            mu_ood = (self._ood_sum / self._ood_mass).to(dtype=dt, device=dev)
        self._geo = geometry(Mu, self._W, mu_ood, self.C, q, default_rtol(self._rtol, self.C, dt),
                             self._strict)
        self._count2 = torch.zeros_like(self._count)
        self.pass_ = 2
        return self

    def result(self) -> NCMetrics:
        """The metrics after pass 2."""
        if self.pass_ != 2 or self._acc is None:
            raise ValueError("result() needs pass 2: call next_pass() and feed the batches again")
        if not torch.equal(self._count, self._count2):
            raise ValueError(f"pass 2 saw {self._count2.tolist()} samples per class but pass 1 "
                             f"{self._count.tolist()}: feed the same samples in both passes")
        return finish(self._geo, self._acc, self._mass / self._total)

    @property
    def state_numel(self) -> int:
        """Numbers held (independent of the number of samples)."""
        out = 0 if self._sums is None else self._sums.numel() + 3 * self.C
        return out + (0 if self._geo is None else self._geo.Mu.numel() * 2 + self.C * (3 * self.C))


def streaming_neural_collapse(batches: Callable[[], Iterable], num_classes: int, *, classifier=None,
                              bias=None, ood_batches: Optional[Callable[[], Iterable]] = None,
                              rtol: Optional[float] = None, strict: Optional[bool] = None) -> NCMetrics:
    """:func:`neural_collapse` over a loader, in two passes.

    Args:
        batches: a callable returning an iterable of ``(features, labels)`` or
            ``(features, labels, weights)`` batches; it is called twice and must give the same
            samples both times.
        num_classes: C.
        classifier, bias, rtol, strict: as :func:`neural_collapse`.
        ood_batches: a callable returning OOD feature batches (``features`` or
            ``(features, weights)``), for nc5.
    """
    acc = NCAccumulator(num_classes, classifier=classifier, bias=bias, rtol=rtol, strict=strict)
    for b in batches():
        acc.update(*b)
    if ood_batches is not None:
        for b in ood_batches():
            acc.update_ood(*(b if isinstance(b, (tuple, list)) else (b,)))
    acc.next_pass()
    for b in batches():
        acc.update(*b)
    return acc.result()
