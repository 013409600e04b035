"""Run the ``ls_init`` experiment: ``python experiments/ls_init.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run ls_init ...``; see ``meanfield list ls_init`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "ls_init", *sys.argv[1:]]))
