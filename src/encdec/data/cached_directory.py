"""A directory built once and shared: by the ranks of a job, the jobs of a sweep and every
later run.

``cached_directory(cache_dir, name, build)`` returns ``cache_dir/name``, calling
``build(temp_dir)`` on a miss: the build writes into a temporary directory beside it, which is
renamed into place under a lock, with a marker file written last. Parallel builders make one
directory, a killed build leaves only a temporary directory (removed by the next build) and is
never read, and a finished directory is read without the lock.
"""

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from encdec.data.tokenization import file_lock

COMPLETE = "encdec_complete.json"  # written last: its presence means the directory is whole


def cached_directory(cache_dir: Path, name: str, build: Callable[[Path], dict[str, Any]]) -> Path:
    """``cache_dir/name``, built by ``build(temp_dir)`` on a miss; what ``build`` returns is
    written into the marker file."""
    path = cache_dir / name
    if not (path / COMPLETE).is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(cache_dir / f"{name}.lock"):
            if not (path / COMPLETE).is_file():
                _build(cache_dir, name, path, build)
    return path


def _build(cache_dir: Path, name: str, path: Path, build: Callable[[Path], dict[str, Any]]) -> None:
    for stale in cache_dir.glob(f".{name}.*"):  # a build that was killed
        shutil.rmtree(stale, ignore_errors=True)
    if path.exists():  # torn: no marker
        shutil.rmtree(path)
    temp = cache_dir / f".{name}.{os.getpid()}"
    temp.mkdir()
    try:
        (temp / COMPLETE).write_text(json.dumps(build(temp)))
        os.replace(temp, path)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
