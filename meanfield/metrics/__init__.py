"""Collapse metrics, one code for finite networks and mean-field networks (docs/science.md §1).

Features ``h_j`` with labels ``y_j`` and relative masses ``p_j`` (divided by their sum):

.. math::

    \\mu_c = \\frac{\\sum_{j\\in c} p_j h_j}{P_c},\\quad \\mu_G = \\frac1C\\sum_c \\mu_c,\\quad
    \\tilde M = [\\mu_1-\\mu_G, \\dots, \\mu_C-\\mu_G],

    \\mathrm{NC1} = \\frac1C \\operatorname{Tr}(\\Sigma_W\\Sigma_B^+)
    = \\sum_j p_j \\big\\|\\tilde M^+ (h_j - \\mu_{y_j})\\big\\|^2,
    \\qquad \\tilde M^+ x = (\\tilde M^\\top\\tilde M)^+\\tilde M^\\top x .

Every metric is assembled from C x C Grams and the (n, C) inner products of the features with the
class means, so no p x p matrix is ever formed (p >> n works), and a mean-field network's features
(the m hidden activations) need only the backend reductions (:func:`particle_neural_collapse`).

The pseudo-inverse is taken on the rank-(C-1) range exactly: the Gram is restricted to the
hyperplane orthogonal to the all-ones vector (which the centred means annihilate) and its
eigenvalues there must all exceed ``rtol`` times the largest; otherwise nc1 is None and
``reasons['nc1']`` says why, while every other measure that is defined is still returned
(``strict=True`` raises :class:`DegenerateMeansError` instead; see :func:`neural_collapse`).

Binary classifiers with a single output row ``w`` (C = 2) are read as the logits ``(-f/2, f/2)``,
``W = [-w/2; w/2]``, so that class 1 (signed label +1, :func:`meanfield.losses.signed_labels`) is
predicted when ``f > 0``.

Beyond one set of features: :class:`NCAccumulator` streams features batch by batch (two passes,
memory independent of n), :func:`layerwise_collapse` measures every layer of a network, and
:func:`spectra` returns the singular values behind the ranks. Definitions and conventions of every
measure: docs/metrics.md.

Modules: ``core`` (result type, checks), ``assemble`` (Grams -> measures), ``measures`` (in-memory
and particle paths), ``streaming``, ``spectra``, ``layerwise``, ``output`` (output collapse).

Output collapse (docs/science.md §1, last part) is measured by :func:`output_collapse`: the absolute
within-class spread, the margin, and the spread normalised by a variation norm or by the margin.
"""

from .core import ALL_FIELDS, NC_FIELDS, NEW_FIELDS, DegenerateMeansError, NCMetrics
from .layerwise import LayerCollapse, LayerwiseCollapse, layerwise_collapse
from .measures import neural_collapse, particle_neural_collapse
from .output import (OutputCollapse, margin, normalised_outputs, output_collapse, output_spread,
                     particle_output_collapse)
from .spectra import Spectra, effective_rank, numerical_rank, spectra
from .streaming import NCAccumulator, streaming_neural_collapse

__all__ = ["NCMetrics", "neural_collapse", "particle_neural_collapse", "OutputCollapse",
           "output_spread", "normalised_outputs", "margin", "output_collapse",
           "particle_output_collapse", "NC_FIELDS", "NEW_FIELDS", "ALL_FIELDS",
           "DegenerateMeansError", "NCAccumulator", "streaming_neural_collapse", "Spectra",
           "spectra", "numerical_rank", "effective_rank", "LayerCollapse", "LayerwiseCollapse",
           "layerwise_collapse"]
