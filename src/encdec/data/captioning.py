"""``CaptioningDataModule``: images with reference captions from a reader
(``encdec.data.caption_readers``: Flickr8k, Karpathy's json, a Hugging Face dataset, synthetic
shapes), as batches.

Every reference of an image is kept for evaluation. Training serves one caption per image per
epoch, drawn afresh each epoch from the seed (``captions_per_image: one``), or every caption
(``all``). Training targets are the captions' lowercased words without punctuation (what the
metrics score); the references stay as written. Images are decoded with Pillow in the
DataLoader workers (``encdec.data.images``), converted to RGB, resized and normalized,
optionally augmented for training. An image that fails to decode is skipped, with a warning,
from its batch: bad input never stops an epoch.
"""

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from encdec.data.batching import TokenBucketBatchSampler, bucketed_loader
from encdec.data.caption_readers import CaptionedImage, CaptionReader, ShapesReader
from encdec.data.collate import pad
from encdec.data.images import (
    AUGMENTATIONS,
    IMAGE_ERRORS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    image_transform,
)
from encdec.data.stages import TokenizedDataModule
from encdec.data.tokenization import BOS_ID, EOS_ID, Seq2SeqTokenizer
from encdec.metrics.captions import caption_words
from encdec.utils.errors import UserError

log = logging.getLogger(__name__)


class CaptionDataset(Dataset):
    """Examples (image index, caption index): the transformed image, that caption's token ids
    and every reference of the image. An image that cannot be decoded gives ``None``."""

    def __init__(
        self,
        records: list[CaptionedImage],
        caption_ids: list[list[list[int]]],  # per image, per caption
        examples: list[tuple[int, int]],
        transform: transforms.Compose,
        image_size: int,
    ) -> None:
        self.records, self.caption_ids, self.examples = records, caption_ids, examples
        self.transform, self.image_size = transform, image_size

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, position: int) -> dict[str, Any] | None:
        image_index, caption_index = self.examples[position]
        record = self.records[image_index]
        try:
            image = record.load(self.image_size)
        except IMAGE_ERRORS as error:
            log.warning("skipped image %s: %s", record.name, error)
            return None
        return {
            "image": self.transform(image),  # (3, H, W)
            "target_ids": self.caption_ids[image_index][caption_index],
            "references": list(record.references),
            "index": image_index,
        }


def collate_captions(examples: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """``source``: images (B, 3, H, W) with ``source_mask`` (B, 1) (one image per row),
    ``target_in`` = BOS + caption, ``target_out`` = caption + EOS, references per image;
    undecodable images (None) are left out (None if none is left)."""
    kept = [e for e in examples if e is not None]
    if not kept:
        return None
    images = torch.stack([e["image"] for e in kept])
    return {
        "source": images,
        "source_mask": images.new_ones(len(kept), 1, dtype=torch.bool),
        "target_in": pad([[BOS_ID, *e["target_ids"]] for e in kept]),
        "target_out": pad([[*e["target_ids"], EOS_ID] for e in kept]),
        "references": [e["references"] for e in kept],
        "index": torch.tensor([e["index"] for e in kept], dtype=torch.long),
    }


def caption_groups(examples: list[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """(first position, count) of each image's run of examples (examples are grouped by image)."""
    start = 0
    while start < len(examples):
        end = start
        while end < len(examples) and examples[end][0] == examples[start][0]:
            end += 1
        yield start, end - start
        start = end


class OneCaptionPerImageSampler(TokenBucketBatchSampler):
    """Batches of ``batch_size`` images, each with one of its captions drawn from (seed, epoch):
    yields indices into the examples list, where image i's captions are at
    ``first[i] .. first[i] + count[i] - 1``. Sharding, resuming and per-epoch ``set_epoch``
    (which draws new captions) are the parent's."""

    def __init__(self, first: list[int], count: list[int], batch_size: int, **kwargs: Any):
        super().__init__([1] * len(first), batch_size, shuffle=True, **kwargs)
        self.first = torch.as_tensor(first, dtype=torch.long)
        self.count = torch.as_tensor(count, dtype=torch.long)

    def _epoch_batches(self) -> list[np.ndarray]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch + 7919)
        draws = (torch.rand(len(self.count), generator=generator) * self.count).long()
        chosen = (self.first + draws).numpy()  # draws < count: rand() < 1
        return [chosen[batch] for batch in super()._epoch_batches()]


class CaptioningDataModule(TokenizedDataModule):
    """``source`` is a reader (``encdec.data.caption_readers``) built from its own config;
    ``path`` is the dataset directory of the readers that read files."""

    def __init__(
        self,
        cache_dir: str,
        source: CaptionReader | None = None,
        path: str | None = None,
        image_size: int = 224,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        augment: list[str] | None = None,
        tokenizer: dict[str, Any] | None = None,
        captions_per_image: str = "one",
        batch_size: int = 32,
        max_length: int = 50,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if captions_per_image not in ("one", "all"):
            raise UserError(f"data.captions_per_image='{captions_per_image}': choose one or all")
        unknown = sorted(set(augment or []) - set(AUGMENTATIONS))
        if unknown:
            raise UserError(f"data.augment: unknown '{unknown[0]}'; choose from {AUGMENTATIONS}")
        self.cache_dir = Path(cache_dir)
        self.source = source or ShapesReader()
        self.path = Path(path) if path else None
        self.image_size = image_size
        self.mean, self.std = list(mean or IMAGENET_MEAN), list(std or IMAGENET_STD)
        self.augment = list(augment or [])
        self.tokenizer_settings = {"kind": "word", "vocab_size": 10000, "min_frequency": 1}
        self.tokenizer_settings |= tokenizer or {}
        self.captions_per_image = captions_per_image
        self.batch_size, self.max_length = batch_size, max_length
        self.num_workers, self.seed = num_workers, seed
        self.tokenizer: Seq2SeqTokenizer | None = None
        self.datasets: dict[str, CaptionDataset] = {}
        self._records: dict[str, list[CaptionedImage]] = {}

    # ---- images and references ----
    def records(self, stage: str) -> list[CaptionedImage]:
        if stage not in self._records:
            self._records[stage] = self.source.read(stage, self.path)
        return self._records[stage]

    def training_references(self) -> list[list[str]]:
        """Every training image's references (CIDEr-D's document frequencies)."""
        return [list(record.references) for record in self.records("train")]

    def image_settings(self) -> dict[str, Any]:
        """How evaluation images are prepared; captioners keep it for inference."""
        return {"image_size": self.image_size, "mean": self.mean, "std": self.std}

    def transform(self, train: bool) -> transforms.Compose:
        return image_transform(**self.image_settings(), augment=self.augment if train else None)

    # ---- tokenizer and datasets (TokenizedDataModule) ----
    def tokenizer_texts(self) -> tuple[None, list[str]]:
        """Target only: the training captions' words."""
        references = self.training_references()
        return None, [" ".join(caption_words(r)) for refs in references for r in refs]

    def build_dataset(self, stage: str, tokenizer: Seq2SeqTokenizer) -> CaptionDataset:
        records = self.records(stage)
        ids = [
            tokenizer.encode_target([" ".join(caption_words(r)) for r in record.references])
            for record in records
        ]
        if stage == "train":  # evaluation keeps everything; training drops unusable captions
            usable = [
                [c for c, caption in enumerate(captions) if 0 < len(caption) <= self.max_length]
                for captions in ids
            ]
            total, kept = sum(map(len, ids)), sum(map(len, usable))
            if kept < total:
                log.warning(
                    "dropped %d of %d training captions that are empty or longer than "
                    "data.max_length=%d tokens",
                    total - kept,
                    total,
                    self.max_length,
                )
            examples = [(i, c) for i, captions in enumerate(usable) for c in captions]
            if not examples:
                raise UserError("no training captions left after filtering empty/over-long ones")
        else:
            examples = [(i, 0) for i in range(len(records))]  # loss/ppl on the first reference
        return CaptionDataset(
            records, ids, examples, self.transform(stage == "train"), self.image_size
        )

    def _sampler(self, stage: str, shuffle: bool) -> TokenBucketBatchSampler:
        """Batches of ``batch_size`` examples (every example costs 1 against the budget)."""
        sharding = self.sharding()
        examples = self.datasets[stage].examples
        if shuffle and self.captions_per_image == "one":
            first, count = zip(*caption_groups(examples), strict=True)
            return OneCaptionPerImageSampler(list(first), list(count), self.batch_size, **sharding)
        return TokenBucketBatchSampler(
            [1] * len(examples), self.batch_size, shuffle, pad_to_equal=shuffle, **sharding
        )

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        return bucketed_loader(
            self.datasets[stage],
            self._sampler(stage, shuffle),
            collate_captions,
            self.num_workers,
            self.seed,
            self.trainer,
            shuffle,
        )
