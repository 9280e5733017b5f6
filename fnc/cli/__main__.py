"""``python -m fnc.cli ...`` and ``torchrun -m fnc.cli ...``: the ``fnc-reid`` program."""

import sys

from fnc.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
