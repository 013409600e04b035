"""Run the ``three_atoms`` experiment: ``python experiments/three_atoms.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run three_atoms ...``; see ``meanfield list three_atoms`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "three_atoms", *sys.argv[1:]]))
