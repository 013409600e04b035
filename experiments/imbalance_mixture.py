"""Run the ``imbalance_mixture`` experiment: ``python experiments/imbalance_mixture.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run imbalance_mixture ...``; see ``meanfield list imbalance_mixture`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "imbalance_mixture", *sys.argv[1:]]))
