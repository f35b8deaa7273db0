"""What the translation and captioning datamodules share: one tokenizer, trained on the
training split's text (and cached), tokenizes every stage; ``setup`` builds only the stages a
Lightning step needs."""

from abc import abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from encdec.data.tokenization import Seq2SeqTokenizer, load_or_train_tokenizer

STAGES = ("train", "val", "test")
STAGES_OF_STEP = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}


class TokenizedDataModule(L.LightningDataModule):
    """Subclasses set ``cache_dir``, ``tokenizer_settings``, ``tokenizer = None`` and
    ``datasets = {}`` in ``__init__`` and say what to train the tokenizer on and how a stage's
    dataset is built."""

    cache_dir: Path
    seed: int
    tokenizer_settings: dict[str, Any]
    tokenizer: Seq2SeqTokenizer | None
    datasets: dict[str, Any]

    @abstractmethod
    def tokenizer_texts(self) -> tuple[list[str] | None, list[str]]:
        """(sources or None for a target-only tokenizer, targets) of the training split."""

    @abstractmethod
    def build_dataset(self, stage: str, tokenizer: Seq2SeqTokenizer) -> Any: ...

    @abstractmethod
    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        """The stage's DataLoader (shuffled and resumable for training)."""

    def sharding(self) -> dict[str, int]:
        """The sampler's seed and this process's share of the batches (DDP)."""
        trainer = self.trainer
        return {
            "seed": self.seed,
            "num_replicas": trainer.world_size if trainer else 1,
            "rank": trainer.global_rank if trainer else 0,
        }

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def tokenizer_corpus(self) -> tuple[Iterable[str] | None, Iterable[str], str | None]:
        """(sources or None, targets, corpus key or None) to train the tokenizer on: the
        texts of ``tokenizer_texts``, keyed by their content."""
        return (*self.tokenizer_texts(), None)

    def prepare_data(self) -> None:
        self.load_tokenizer()

    def load_tokenizer(self) -> Seq2SeqTokenizer:
        if self.tokenizer is None:
            sources, targets, corpus_key = self.tokenizer_corpus()
            self.tokenizer = load_or_train_tokenizer(
                self.cache_dir, sources, targets, **self.tokenizer_settings, corpus_key=corpus_key
            )
        return self.tokenizer

    def setup(self, stage: str | None = None) -> None:
        tokenizer = self.load_tokenizer()
        for name in STAGES_OF_STEP.get(stage or "", STAGES):
            if name not in self.datasets:
                self.datasets[name] = self.build_dataset(name, tokenizer)
