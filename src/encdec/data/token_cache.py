"""Token ids cached on disk: built once per corpus and tokenizer, memory-mapped by every run
and every DDP rank.

A stage's rows (``index``, ``source_ids`` / ``target_ids``, the padded cost ``length`` and,
for evaluation, the raw ``source`` and ``target`` text) are an Arrow file, ``tokens.arrow``
under ``cache_dir/tokens-v<FORMAT>-<key>/``, the key a digest of the corpus content, the tokenizer
and the settings that change the rows; ``FORMAT`` changes with the rows' layout, so a cache
written by another version is never read. It is built once, under a lock and atomically
(``cached_directory``): the ranks of a job and the jobs of a sweep make one, a torn one is
never read.
Loading maps the file into memory: pages are read as batches need them and shared between
processes, and no Python list of the corpus is made.
"""

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import datasets

from encdec.data.cached_directory import cached_directory

log = logging.getLogger(__name__)

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

    def build_table(directory: Path) -> dict[str, int]:
        log.info("building the token cache of %s in %s", what, directory)
        datasets.enable_progress_bars()
        try:
            return {"rows": build(directory / TABLE), "format": FORMAT}
        finally:
            datasets.disable_progress_bars()

    path = cached_directory(cache_dir, f"tokens-v{FORMAT}-{key}", build_table)
    return datasets.Dataset.from_file(str(path / TABLE))
