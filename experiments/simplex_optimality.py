"""Run the ``simplex_optimality`` experiment (see ``meanfield list simplex_optimality``).

Usage: ``python experiments/simplex_optimality.py [--set key=value ...] [--out DIR] [--device cuda]``
(any option of ``meanfield run``); bigger runs are just ``--set`` overrides.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "simplex_optimality", *sys.argv[1:]]))
