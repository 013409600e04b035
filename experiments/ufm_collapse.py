"""Run the ``ufm_collapse`` experiment: ``python experiments/ufm_collapse.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run ufm_collapse ...``; see ``meanfield list ufm_collapse`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "ufm_collapse", *sys.argv[1:]]))
