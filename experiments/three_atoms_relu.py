"""Run the ``three_atoms_relu`` experiment (see ``meanfield list three_atoms_relu``).

Usage: ``python experiments/three_atoms_relu.py [--set key=value ...] [--out DIR] [--device cuda]``
(any option of ``meanfield run``); bigger runs are just ``--set`` overrides.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "three_atoms_relu", *sys.argv[1:]]))
