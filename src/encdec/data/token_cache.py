"""Token ids cached on disk: built once per corpus and tokenizer, memory-mapped by every run
and every DDP rank.

A stage's rows (``index``, ``source_ids`` / ``target_ids``, the padded cost ``length`` and,
for evaluation, the raw ``source`` and ``target`` text) are an Arrow file, ``tokens.arrow``
under ``cache_dir/tokens-v<FORMAT>-<key>/``, the key a digest of the corpus content, the tokenizer
and the settings that change the rows; ``FORMAT`` changes with the rows' layout, so a cache
written by another version is never read. A build writes into a temporary directory beside
it and renames that into place under a lock, with a marker file written last: parallel
builders (the ranks of a job, two jobs of a sweep) make one cache, a killed build leaves only a
temporary directory (removed by the next build) and is never read, and a finished cache is read
without the lock.
Loading maps the files into memory: pages are read as batches need them and shared between
processes, and no Python list of the corpus is made.
"""

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import datasets

from encdec.data.tokenization import file_lock

log = logging.getLogger(__name__)

COMPLETE = "encdec_complete.json"  # written last: its presence means the cache is whole
TABLE = "tokens.arrow"  # the rows: one Arrow stream file
FORMAT = 3  # bumped when the layout changes (2: uint16 ids, length, no train text; 3: one file)


def digest_files(paths: Iterable[Path], chunk_bytes: int = 1 << 22) -> str:
    """SHA-256 hex digest of the files' names and bytes, read in chunks."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"\0{path.name}\0".encode())
        with open(path, "rb") as file:
            while chunk := file.read(chunk_bytes):
                digest.update(chunk)
    return digest.hexdigest()


def digest_values(*values: object) -> str:
    """SHA-256 hex digest of JSON-serialisable values."""
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


def load_or_build(
    cache_dir: Path, key: str, build: Callable[[Path], int], what: str
) -> datasets.Dataset:
    """The cached table ``key``, written by ``build(arrow_file)`` (which returns its number of
    rows) on a miss, memory-mapped."""
    key = f"v{FORMAT}-{key}"
    path = cache_dir / f"tokens-{key}"
    if not (path / COMPLETE).is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with file_lock(cache_dir / f"tokens-{key}.lock"):
            if not (path / COMPLETE).is_file():
                _build(cache_dir, key, path, build, what)
    return datasets.Dataset.from_file(str(path / TABLE))


def _build(cache_dir: Path, key: str, path: Path, build: Callable[[Path], int], what: str) -> None:
    for stale in cache_dir.glob(f".tokens-{key}.*"):  # a build that was killed
        shutil.rmtree(stale, ignore_errors=True)
    if path.exists():  # torn: no marker
        shutil.rmtree(path)
    temp = cache_dir / f".tokens-{key}.{os.getpid()}"
    temp.mkdir()
    log.info("building the token cache of %s in %s", what, path)
    datasets.enable_progress_bars()
    try:
        rows = build(temp / TABLE)
        (temp / COMPLETE).write_text(json.dumps({"rows": rows, "format": FORMAT}))
        os.replace(temp, path)
    finally:
        datasets.disable_progress_bars()
        shutil.rmtree(temp, ignore_errors=True)
