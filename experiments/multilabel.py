"""Run the ``multilabel`` experiment: ``python experiments/multilabel.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run multilabel ...``; see ``meanfield list multilabel`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "multilabel", *sys.argv[1:]]))
