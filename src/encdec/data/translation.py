"""``TranslationDataModule``: parallel text from the Hugging Face hub or local files.

Sources, chosen by config:
- ``path``: a local directory with, per split, one plain or gzipped text file per language
  (``train.de.gz`` + ``train.en.gz``: line i of one translates line i of the other), or a
  ``{split}.tsv`` with the two languages as columns (header row naming them), or a
  ``{split}.jsonl`` with ``{"de": ..., "en": ...}`` or ``{"translation": {...}}`` per line;
- ``hub_id``: a hub dataset with the two language columns or a ``translation`` column.

The tokenizer is trained on the training split in ``prepare_data`` and cached under
``cache_dir``; token ids live in a ``datasets.Dataset``; batches come from the length-bucketed
``TokenBucketBatchSampler``, sharded across DDP ranks (``max_tokens`` is per device).
"""

import csv
import gzip
import json
import logging
from pathlib import Path
from typing import Any

import datasets
from torch.utils.data import DataLoader

from encdec.data.batching import TokenBucketBatchSampler, bucketed_loader
from encdec.data.collate import collate_pairs
from encdec.data.stages import STAGES, TokenizedDataModule
from encdec.data.tokenization import Seq2SeqTokenizer
from encdec.utils.errors import UserError

log = logging.getLogger(__name__)
datasets.disable_progress_bars()
Pairs = tuple[list[str], list[str]]  # (sources, targets)


def read_lines(path: Path) -> list[str]:
    """Lines of a plain or .gz UTF-8 text file; a bad byte is reported with its line number."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        raw_lines = file.read().splitlines()
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8").strip())
        except UnicodeDecodeError as error:
            raise UserError(f"{path}:{number}: not valid UTF-8 ({error.reason})") from None
    return lines


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_local_split(directory: Path, split: str, source_lang: str, target_lang: str) -> Pairs:
    """One split from ``directory``: parallel text files, a TSV or a JSONL file."""
    source_file = _find(directory, f"{split}.{source_lang}")
    target_file = _find(directory, f"{split}.{target_lang}")
    if source_file and target_file:
        sources, targets = read_lines(source_file), read_lines(target_file)
        if len(sources) != len(targets):
            raise UserError(
                f"{source_file} has {len(sources)} lines but {target_file} has "
                f"{len(targets)}: parallel files must have one line per sentence"
            )
        return sources, targets
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

    # ---- tokenizer and datasets (TokenizedDataModule) ----
    def tokenizer_texts(self) -> Pairs:
        return self.texts("train")

    def build_dataset(self, stage: str, tokenizer: Seq2SeqTokenizer) -> datasets.Dataset:
        sources, targets = self.texts(stage)
        dataset = datasets.Dataset.from_dict(
            {"index": list(range(len(sources))), "source": sources, "target": targets}
        )
        dataset = dataset.map(
            lambda batch: {
                "source_ids": tokenizer.encode_source(batch["source"]),
                "target_ids": tokenizer.encode_target(batch["target"]),
            },
            batched=True,
            batch_size=2048,
        )
        if stage == "train":  # evaluation keeps every sentence; training drops unusable pairs
            before, max_length = len(dataset), self.max_length
            dataset = dataset.filter(
                lambda e: all(0 < len(e[key]) <= max_length for key in ("source_ids", "target_ids"))
            )
            if len(dataset) < before:
                log.warning(
                    "dropped %d of %d training pairs that are empty or longer than "
                    "data.max_length=%d tokens",
                    before - len(dataset),
                    before,
                    self.max_length,
                )
            if len(dataset) == 0:
                raise UserError("no training pairs left after filtering empty/over-long ones")
        return dataset

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[stage]
        lengths = [
            max(len(s), len(t)) + 2
            for s, t in zip(dataset["source_ids"], dataset["target_ids"], strict=True)
        ]
        trainer = self.trainer
        sampler = TokenBucketBatchSampler(
            lengths,
            self.max_tokens,
            shuffle=shuffle,
            seed=self.seed,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
            pad_to_equal=shuffle,
        )
        return bucketed_loader(
            dataset, sampler, collate_pairs, self.num_workers, self.seed, trainer, shuffle
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
