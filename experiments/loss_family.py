"""Run the ``loss_family`` experiment: ``python experiments/loss_family.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run loss_family ...``; see ``meanfield list loss_family`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "loss_family", *sys.argv[1:]]))
