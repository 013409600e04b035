"""Run the ``weight_decay`` experiment: ``python experiments/weight_decay.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run weight_decay ...``; see ``meanfield list weight_decay`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "weight_decay", *sys.argv[1:]]))
