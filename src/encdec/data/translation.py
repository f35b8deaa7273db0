"""``TranslationDataModule``: parallel text from the Hugging Face hub or local files.

Sources, chosen by config:
- ``path``: a local directory with, per split, one plain or gzipped text file per language
  (``train.de.gz`` + ``train.en.gz``: line i of one translates line i of the other), or a
  ``{split}.tsv`` with the two languages as columns (header row naming them), or a
  ``{split}.jsonl`` with ``{"de": ..., "en": ...}`` or ``{"translation": {...}}`` per line;
- ``hub_id``: a hub dataset with the two language columns or a ``translation`` column.

The tokenizer is trained on the training split in ``prepare_data`` and cached under
``cache_dir``. Token ids are cached there too (``token_cache``): an Arrow table per stage,
keyed by the corpus content and the tokenizer, built once in one pass (chunks of pairs encoded
by the tokenizer's threads, on every core) and memory-mapped by every later run and every DDP
rank. Parallel text files are streamed, so neither the tokenizer nor the cache needs the
corpus in memory. Batches come from the length-bucketed ``TokenBucketBatchSampler`` over the
table's length column, sharded across DDP ranks (``max_tokens`` is per device).
"""

import csv
import gzip
import itertools
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import datasets
import numpy as np
import pyarrow as pa
from datasets.arrow_writer import ArrowWriter
from datasets.utils.tqdm import tqdm
from torch.utils.data import DataLoader

from encdec.data.batching import TokenBucketBatchSampler, bucketed_loader
from encdec.data.collate import collate_pairs
from encdec.data.stages import STAGES, TokenizedDataModule
from encdec.data.token_cache import digest_files, digest_values, load_or_build
from encdec.data.tokenization import Seq2SeqTokenizer
from encdec.utils.errors import UserError

log = logging.getLogger(__name__)
datasets.disable_progress_bars()
Pairs = tuple[list[str], list[str]]  # (sources, targets)
CHUNK_PAIRS = 20_000  # pairs tokenized and written at a time: memory stays bounded


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def stream_lines(path: Path) -> Iterator[str]:
    """The stripped lines of a plain or .gz UTF-8 text file, one at a time; a bad byte is
    reported with its line number."""
    with _open(path) as file:
        for number, raw in enumerate(file, start=1):
            try:
                yield raw.decode("utf-8").strip()
            except UnicodeDecodeError as error:
                raise UserError(f"{path}:{number}: not valid UTF-8 ({error.reason})") from None


def stream_pairs(source_file: str, target_file: str) -> Iterator[tuple[str, str]]:
    """The ``(source, target)`` pairs of two parallel files, read line by line; files
    of different lengths are refused when the shorter one ends."""
    sources, targets = stream_lines(Path(source_file)), stream_lines(Path(target_file))
    for index, (source, target) in enumerate(itertools.zip_longest(sources, targets)):
        if source is None or target is None:
            longer = 1 + sum(1 for _ in (targets if source is None else sources))
            counts = (index, index + longer) if source is None else (index + longer, index)
            raise UserError(
                f"{source_file} has {counts[0]} lines but {target_file} has {counts[1]}: "
                "parallel files must have one line per sentence"
            )
        yield source, target


def read_lines(path: Path) -> list[str]:
    """Lines of a plain or .gz UTF-8 text file; a bad byte is reported with its line number."""
    return list(stream_lines(path))


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def parallel_files(
    directory: Path, split: str, source_lang: str, target_lang: str
) -> tuple[Path, Path] | None:
    """The split's ``{split}.{lang}[.gz]`` pair of files, if it has one."""
    source_file = _find(directory, f"{split}.{source_lang}")
    target_file = _find(directory, f"{split}.{target_lang}")
    return (source_file, target_file) if source_file and target_file else None


def split_files(directory: Path, split: str, source_lang: str, target_lang: str) -> list[Path]:
    """The files a local split is read from (for the caches' keys)."""
    if files := parallel_files(directory, split, source_lang, target_lang):
        return list(files)
    return [f for f in (_find(directory, f"{split}.tsv"), _find(directory, f"{split}.jsonl")) if f][
        :1
    ]


def read_local_split(directory: Path, split: str, source_lang: str, target_lang: str) -> Pairs:
    """One split from ``directory``: parallel text files, a TSV or a JSONL file."""
    if files := parallel_files(directory, split, source_lang, target_lang):
        pairs = list(stream_pairs(str(files[0]), str(files[1])))
        return [source for source, _ in pairs], [target for _, target in pairs]
    if tsv := _find(directory, f"{split}.tsv"):
        rows = list(csv.DictReader(read_lines(tsv), delimiter="\t", quoting=csv.QUOTE_NONE))
        return _columns(rows, source_lang, target_lang, tsv)
    if jsonl := _find(directory, f"{split}.jsonl"):
        rows = []
        for number, line in enumerate(read_lines(jsonl), start=1):
            if line:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise UserError(f"{jsonl}:{number}: invalid JSON ({error.msg})") from None
        return _columns(rows, source_lang, target_lang, jsonl)
    raise UserError(
        f"no '{split}' split in {directory}: expected {split}.{source_lang}[.gz] and "
        f"{split}.{target_lang}[.gz], {split}.tsv or {split}.jsonl"
    )


def _columns(rows: list[dict[str, Any]], source_lang: str, target_lang: str, origin: Any) -> Pairs:
    sources, targets = [], []
    for number, row in enumerate(rows, start=1):
        pair = row.get("translation", row)
        if source_lang not in pair or target_lang not in pair:
            raise UserError(
                f"{origin}: row {number} has no '{source_lang}' and '{target_lang}' "
                f"fields (found: {', '.join(pair)})"
            )
        sources.append((pair[source_lang] or "").strip())
        targets.append((pair[target_lang] or "").strip())
    return sources, targets


def read_hub_split(hub_id: str, split: str, source_lang: str, target_lang: str) -> Pairs:
    try:
        dataset = datasets.load_dataset(hub_id, split=split)
    except Exception as error:  # offline, unknown id or split: all end the same way
        raise UserError(
            f"cannot load '{hub_id}' split '{split}' from the Hugging Face hub "
            f"({type(error).__name__}); offline, pass data.path=DIR with local "
            "files"
        ) from None
    return _columns(dataset, source_lang, target_lang, f"{hub_id}[{split}]")


class TranslationDataModule(TokenizedDataModule):
    def __init__(
        self,
        source_lang: str,
        target_lang: str,
        cache_dir: str,
        path: str | None = None,
        hub_id: str | None = None,
        splits: dict[str, str] | None = None,
        hub_splits: dict[str, str] | None = None,
        tokenizer: dict[str, Any] | None = None,
        max_tokens: int = 4096,
        max_length: int = 250,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.source_lang, self.target_lang = source_lang, target_lang
        self.cache_dir = Path(cache_dir)
        self.path = Path(path) if path else None
        self.hub_id = hub_id
        self.splits = splits or {stage: stage for stage in STAGES}
        self.hub_splits = hub_splits or self.splits
        self.tokenizer_settings = {
            "kind": "bpe",
            "vocab_size": 8000,
            "joint": True,
            "min_frequency": 2,
            **(tokenizer or {}),
        }
        self.max_tokens, self.max_length = max_tokens, max_length
        self.num_workers, self.seed = num_workers, seed
        self.tokenizer: Seq2SeqTokenizer | None = None
        self.datasets: dict[str, datasets.Dataset] = {}
        self._texts: dict[str, Pairs] = {}
        self._digests: dict[str, str] = {}  # corpus_digest per stage: files hashed once a run

    # ---- raw text ----
    def read_split(self, stage: str) -> Pairs:
        """Raw (sources, targets) of a stage; subclasses with generated data override this."""
        if self.path is not None:
            if not self.path.is_dir():
                raise UserError(f"data.path '{self.path}' is not a directory")
            return read_local_split(
                self.path, self.splits[stage], self.source_lang, self.target_lang
            )
        if self.hub_id:
            return read_hub_split(
                self.hub_id, self.hub_splits[stage], self.source_lang, self.target_lang
            )
        raise UserError("set data.path (a local directory) or data.hub_id")

    def texts(self, stage: str) -> Pairs:
        if stage not in self._texts:
            sources, targets = self.read_split(stage)
            if not sources:
                raise UserError(f"the {stage} split ('{self.splits.get(stage, stage)}') is empty")
            self._texts[stage] = (sources, targets)
        return self._texts[stage]

    def local_parallel_files(self, stage: str) -> tuple[Path, Path] | None:
        """The stage's two parallel text files, when it is read from such files."""
        if self.path is None or not self.path.is_dir():
            return None
        return parallel_files(self.path, self.splits[stage], self.source_lang, self.target_lang)

    def corpus_digest(self, stage: str) -> str:
        """A digest of the stage's corpus: of its files when it is read from local files (no
        need to read them as text), else of its texts. Computed once per stage (the tokenizer's
        and the token cache's keys both need the training split's)."""
        if stage not in self._digests:
            files = []
            if self.path is not None and self.path.is_dir():
                split = self.splits[stage]
                files = split_files(self.path, split, self.source_lang, self.target_lang)
            self._digests[stage] = (
                digest_values("files", self.source_lang, self.target_lang, digest_files(files))
                if files
                else digest_values("texts", *self.texts(stage))
            )
        return self._digests[stage]

    # ---- tokenizer and datasets (TokenizedDataModule) ----
    def tokenizer_texts(self) -> Pairs:
        return self.texts("train")

    def tokenizer_corpus(self) -> tuple[Iterable[str] | None, Iterable[str], str | None]:
        """Parallel training files are read lazily (only if the tokenizer is not cached) and
        keyed by their digest; other sources as ``TokenizedDataModule`` does."""
        files = self.local_parallel_files("train")
        if files is None:
            return super().tokenizer_corpus()
        # the source side goes through stream_pairs, which refuses files of unequal length
        # before either side ends; the target side needs only its own file
        sources = (source for source, _ in stream_pairs(str(files[0]), str(files[1])))
        return sources, stream_lines(files[1]), self.corpus_digest("train")

    def prepare_data(self) -> None:
        """The tokenizer and the training split's token cache, built once (on one process per
        node under DDP; the other ranks then map the same files)."""
        super().prepare_data()
        self.build_dataset("train", self.load_tokenizer())

    def build_dataset(self, stage: str, tokenizer: Seq2SeqTokenizer) -> datasets.Dataset:
        """The stage's token cache (memory-mapped), built on a miss."""
        key = digest_values(
            self.corpus_digest(stage),
            digest_values(tokenizer.to_dict()),
            self.max_length if stage == "train" else None,
        )[:16]
        return load_or_build(
            self.cache_dir,
            key,
            lambda arrow_file: self.tokenize(stage, arrow_file, tokenizer),
            f"the {stage} split ({self.splits.get(stage, stage)})",
        )

    def pair_chunks(self, stage: str) -> Iterator[Pairs]:
        """The stage's (sources, targets), ``CHUNK_PAIRS`` at a time: parallel files streamed,
        other sources sliced from their texts."""
        if files := self.local_parallel_files(stage):
            pairs = stream_pairs(str(files[0]), str(files[1]))
            while chunk := list(itertools.islice(pairs, CHUNK_PAIRS)):
                yield [source for source, _ in chunk], [target for _, target in chunk]
            return
        sources, targets = self.texts(stage)
        for start in range(0, len(sources), CHUNK_PAIRS):
            yield sources[start : start + CHUNK_PAIRS], targets[start : start + CHUNK_PAIRS]

    def tokenize(self, stage: str, arrow_file: Path, tokenizer: Seq2SeqTokenizer) -> int:
        """Write the stage's rows with their token ids (the smallest integer type that holds
        the vocabulary) and padded cost ``length`` to ``arrow_file``, a chunk at a time;
        training drops unusable pairs and keeps no text (only evaluation needs references).
        Returns the number of rows."""
        largest = max(tokenizer.vocab_sizes().values())
        id_type = np.uint16 if largest <= 2**16 else np.int32
        keep_text = stage != "train"
        max_length = None if keep_text else self.max_length
        read = written = 0
        with (
            ArrowWriter(features=row_features(id_type, keep_text), path=str(arrow_file)) as writer,
            tqdm(desc=f"tokenizing {stage}", unit=" pairs") as progress,
        ):
            for pairs in self.pair_chunks(stage):
                table = encoded_table(tokenizer, pairs, read, id_type, max_length, keep_text)
                writer.write_table(table)
                read, written = read + len(pairs[0]), written + table.num_rows
                progress.update(len(pairs[0]))
            writer.finalize()
        if read == 0:
            raise UserError(f"the {stage} split ('{self.splits.get(stage, stage)}') is empty")
        if written < read:
            log.warning(
                "dropped %d of %d training pairs that are empty or longer than "
                "data.max_length=%d tokens",
                read - written,
                read,
                self.max_length,
            )
        if written == 0:
            raise UserError("no training pairs left after filtering empty/over-long ones")
        return written

    def collate(self, stage: str) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        """How a stage's rows become a batch."""
        return collate_pairs

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[stage]
        sampler = TokenBucketBatchSampler(
            pair_lengths(dataset), self.max_tokens, shuffle, pad_to_equal=shuffle, **self.sharding()
        )
        collate = self.collate(stage)
        return bucketed_loader(
            dataset, sampler, collate, self.num_workers, self.seed, self.trainer, shuffle
        )


def row_features(id_type: type[np.integer], keep_text: bool) -> datasets.Features:
    """The cached table's columns: ``index`` (the pair's line in its split), the texts when
    ``keep_text``, both sides' token ids and the pair's padded cost ``length``."""
    ids = datasets.List(datasets.Value(np.dtype(id_type).name))
    text = {"source": datasets.Value("string"), "target": datasets.Value("string")}
    return datasets.Features(
        {
            "index": datasets.Value("int64"),
            **(text if keep_text else {}),
            "source_ids": ids,
            "target_ids": ids,
            "length": datasets.Value("int32"),
        }
    )


def encoded_table(
    tokenizer: Seq2SeqTokenizer,
    pairs: Pairs,
    first_index: int,
    id_type: type[np.integer],
    max_length: int | None,
    keep_text: bool,
) -> pa.Table:
    """A chunk of pairs as an Arrow table of ``row_features``, encoded by the tokenizer's
    threads (all cores); token ids built as flat arrays, no Python object per token. With
    ``max_length``, only the pairs whose sides are non-empty and at most that long.
    ``length``: the longer side plus ``<s>``/``</s>``."""
    sources, targets = pairs
    source_ids, target_ids = tokenizer.encode_source(sources), tokenizer.encode_target(targets)
    source_lengths = np.fromiter(map(len, source_ids), np.int32, len(source_ids))
    target_lengths = np.fromiter(map(len, target_ids), np.int32, len(target_ids))
    text = {"source": sources, "target": targets} if keep_text else {}
    table = pa.table(
        {
            "index": np.arange(first_index, first_index + len(sources), dtype=np.int64),
            **{name: pa.array(column, pa.string()) for name, column in text.items()},
            "source_ids": list_array(source_ids, source_lengths, id_type),
            "target_ids": list_array(target_ids, target_lengths, id_type),
            "length": np.maximum(source_lengths, target_lengths) + 2,
        }
    )
    if max_length is None:
        return table
    shortest = np.minimum(source_lengths, target_lengths)
    longest = np.maximum(source_lengths, target_lengths)
    return table.filter(pa.array((shortest > 0) & (longest <= max_length)))


def list_array(
    sequences: list[list[int]], lengths: np.ndarray, id_type: type[np.integer]
) -> pa.ListArray:
    """``sequences`` (of ``lengths``) as an Arrow list array: one flat value buffer + offsets."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.fromiter(itertools.chain.from_iterable(sequences), id_type, int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))


def pair_lengths(dataset: datasets.Dataset) -> np.ndarray:
    """Each pair's padded cost length, (rows,) int32: the cached table's ``length`` column,
    read as one array (no Python list; the token columns are not touched). The table is one
    loaded from the cache, so its rows are in the table's order."""
    return dataset.data.column("length").to_numpy().astype(np.int32, copy=False)
