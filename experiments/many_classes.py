"""Run the ``many_classes`` experiment: ``python experiments/many_classes.py [--set key=value ...] [--out DIR]``.

Same as ``meanfield run many_classes ...``; see ``meanfield list many_classes`` for the parameters.
"""

import sys

from meanfield.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", "many_classes", *sys.argv[1:]]))
