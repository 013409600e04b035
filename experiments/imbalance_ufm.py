"""Run the ``imbalance_ufm`` experiment: ``python experiments/imbalance_ufm.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run imbalance_ufm ...``; see ``meanfield list imbalance_ufm`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "imbalance_ufm", *sys.argv[1:]]))
