"""Class geometry: convex-hull LPs (HiGHS), pairwise class geometry, hull boundaries.

Public names (a contract other modules build on):

- :func:`in_hull`, :func:`hulls_intersect`, :func:`separation_margin`, :func:`hull_gap`
  (:mod:`.hulls`): one LP per query / pair.
- :class:`PairGeometry`, :class:`ClassGeometry`, :func:`class_geometry`, :func:`enclosed`
  (:mod:`.classes`): every pair of classes of a labelled set.
- :func:`hull_boundary` (:mod:`.boundary`): where a one-parameter family first puts a class
  inside another class's hull; :class:`HullLine` (:mod:`.lines`): that boundary for a registered
  distribution with the user's parameters, as the ``fn`` of a phase-diagram Theory.

An engine module: numbers in, numbers out (numpy; torch tensors are accepted).
"""

from .boundary import CRITERIA, hull_boundary
from .classes import ClassGeometry, PairGeometry, class_geometry, enclosed
from .hulls import hull_gap, hulls_intersect, in_hull, separation_margin
from .lines import HullLine

__all__ = ["in_hull", "hulls_intersect", "hull_gap", "separation_margin", "PairGeometry",
           "ClassGeometry", "class_geometry", "enclosed", "hull_boundary", "CRITERIA",
           "HullLine"]
