"""Run an entry point or script with the CPU libraries that make it faster preloaded
(tcmalloc; on AMD CPUs with AVX-512, the MKL vendor shim: see :mod:`encdec.utils.preload`):

    python -m encdec.fast encdec.train model=transformer ...
    python -m encdec.fast scripts/benchmark.py --data-path ...

The command is started once, as given, with ``LD_PRELOAD`` set; its log says what it got.
"""

import os
import sys

from encdec.utils.preload import preload_environment


def command_line(arguments: list[str]) -> list[str]:
    """The Python command that runs ``arguments``: a script (``*.py``) or a module."""
    target, *rest = arguments
    if target.endswith(".py"):
        return [sys.executable, target, *rest]
    return [sys.executable, "-m", target, *rest]


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    command = command_line(sys.argv[1:])
    sys.stdout.flush()
    os.execve(command[0], command, preload_environment())


if __name__ == "__main__":
    main()
