"""tcmalloc for the entry points: on this kind of VM glibc's allocator returns freed memory to the
kernel and faults it back in on every training step; tcmalloc keeps it, which made CPU training
14-50% faster here (docs/results.md) with identical results.

When ``libtcmalloc_minimal`` is installed (Debian: ``apt-get install libtcmalloc-minimal4``) and
not yet loaded, the entry point restarts itself once with it in ``LD_PRELOAD``.
``ENCDEC_TCMALLOC=0`` turns this off. Entry points decorate ``main`` with :func:`with_tcmalloc`;
``encdec.translate``, a filter whose whole run is timed, calls :func:`restart_with_tcmalloc`
before its other imports instead, so that the restart does not import Hydra twice.
"""

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")
LIBRARY_NAME = "libtcmalloc_minimal.so.4"


def find_tcmalloc() -> Path | None:
    return next(
        (Path(d) / LIBRARY_NAME for d in LIBRARY_DIRS if (Path(d) / LIBRARY_NAME).is_file()), None
    )


def restart_with_tcmalloc() -> None:
    """Replace this process by the same command with tcmalloc preloaded, where that applies."""
    preloaded = os.environ.get("LD_PRELOAD", "")
    if os.environ.get("ENCDEC_TCMALLOC", "1") == "0" or "tcmalloc" in preloaded:
        return
    library = find_tcmalloc()
    if library is None:
        return
    environment = dict(os.environ, LD_PRELOAD=":".join(filter(None, [str(library), preloaded])))
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)


def with_tcmalloc(main: Callable[..., Any]) -> Callable[..., Any]:
    """Decorates an entry point's ``main``: restart with tcmalloc first (see the module)."""

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        restart_with_tcmalloc()
        return main(*args, **kwargs)

    return wrapper
