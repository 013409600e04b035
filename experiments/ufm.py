"""Run the ``ufm`` experiment: ``python experiments/ufm.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run ufm ...``; see ``meanfield list ufm`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "ufm", *sys.argv[1:]]))
