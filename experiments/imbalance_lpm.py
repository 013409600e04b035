"""Run the ``imbalance_lpm`` experiment: ``python experiments/imbalance_lpm.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run imbalance_lpm ...``; see ``meanfield list imbalance_lpm`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "imbalance_lpm", *sys.argv[1:]]))
