"""Run the ``fixed_etf`` experiment: ``python experiments/fixed_etf.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run fixed_etf ...``; see ``meanfield list fixed_etf`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "fixed_etf", *sys.argv[1:]]))
