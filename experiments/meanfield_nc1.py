"""Run the ``meanfield_nc1`` experiment: ``python experiments/meanfield_nc1.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run meanfield_nc1 ...``; see ``meanfield list meanfield_nc1`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "meanfield_nc1", *sys.argv[1:]]))
