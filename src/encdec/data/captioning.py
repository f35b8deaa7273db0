"""``CaptioningDataModule``: images with reference captions, from one of three sources.

- ``source: flickr8k``: the Flickr8k layout under ``path``: ``Flickr8k.token.txt``
  (``<image>#<n><TAB><caption>`` per line), ``Flickr_8k.{train,dev,test}Images.txt`` and the
  images in ``path/image_dir``;
- ``source: karpathy``: Karpathy's ``dataset_{flickr8k,flickr30k,coco}.json`` (``annotations``,
  under ``path``) and its image folder (``restval`` images train);
- ``source: hf``: a Hugging Face image dataset (an image column and a column with a list of
  captions, or one caption, per image) by hub id, or a local directory ``datasets`` reads
  (e.g. an imagefolder with ``metadata.jsonl``), given as ``hub_id``;
- ``source: shapes``: synthetic scenes of coloured shapes (``encdec.data.shapes``), generated
  on the fly; ``shapes`` gives the number of scenes per split and the scenes' own seed (so
  runs with different ``seed`` train and test on the same scenes).

Every reference of an image is kept for evaluation. Training serves one caption per image per
epoch, drawn afresh each epoch from the seed (``captions_per_image: one``), or every caption
(``all``). Training targets are the captions' lowercased words without punctuation (what the
metrics score); the references stay as written. Images are decoded with Pillow in the
DataLoader workers, converted to RGB (grayscale, CMYK, palette; transparency onto white),
resized and normalized, optionally augmented for training.

Bad input never stops an epoch: a caption line without a tab is a one-line ``UserError`` when
the data is read; images listed in a split but absent (or without captions) are skipped with a
logged count; an image that fails to decode is skipped, with a warning, from its batch.
"""

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from encdec.data.batching import TokenBucketBatchSampler, bucketed_loader
from encdec.data.collate import pad
from encdec.data.shapes import Scene, draw_scene, generate_scene
from encdec.data.stages import TokenizedDataModule
from encdec.data.tokenization import BOS_ID, EOS_ID, Seq2SeqTokenizer
from encdec.metrics.captions import caption_words
from encdec.utils.errors import UserError

log = logging.getLogger(__name__)
SOURCES = ("shapes", "flickr8k", "karpathy", "hf")
FLICKR8K_SPLITS = {"train": "trainImages", "val": "devImages", "test": "testImages"}
KARPATHY_SPLITS = {"train": ("train", "restval"), "val": ("val",), "test": ("test",)}
AUGMENTATIONS = ("crop", "flip", "jitter")
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
WHITE = (255, 255, 255)
IMAGE_ERRORS = (OSError, ValueError, Image.DecompressionBombError)  # what a bad file raises


@dataclass(frozen=True, eq=False)
class DatasetImage:
    """Row ``index`` of a Hugging Face dataset's image column, decoded on demand."""

    rows: datasets.Dataset
    index: int
    column: str

    def load(self) -> Image.Image:
        return to_rgb(self.rows[self.index][self.column])


@dataclass(frozen=True)
class CaptionedImage:
    image: Path | Scene | DatasetImage  # a file, a synthetic scene or a dataset row
    references: tuple[str, ...]

    @property
    def name(self) -> str:
        if isinstance(self.image, DatasetImage):
            return f"row {self.image.index}"
        return str(self.image) if isinstance(self.image, Path) else "synthetic scene"


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as RGB; transparent pixels (RGBA, LA, palette transparency) become white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, I, F


def read_image_file(path: Path) -> Image.Image:
    """An image file decoded as RGB; raises one of ``IMAGE_ERRORS`` for a missing or bad file."""
    with Image.open(path) as image:
        image.load()  # decode now: a truncated file fails here, not later
        return to_rgb(image)


def load_image(record: CaptionedImage, image_size: int) -> Image.Image:
    """The record's image as RGB (a scene is drawn at ``image_size``)."""
    if isinstance(record.image, Scene):
        return draw_scene(record.image, image_size)
    if isinstance(record.image, DatasetImage):
        return record.image.load()
    return read_image_file(record.image)


def image_transform(
    image_size: int, mean: list[float], std: list[float], augment: list[str] | None = None
) -> transforms.Compose:
    """Resize to a square (or, with ``crop``, a random 80-100% crop of it), optionally flip
    and jitter colours, then a normalized tensor (3, image_size, image_size)."""
    augment = augment or []
    size = (image_size, image_size)
    steps: list[Any] = []
    if "crop" in augment:
        steps.append(transforms.RandomResizedCrop(size, scale=(0.8, 1.0), ratio=(0.9, 1.1)))
    else:
        steps.append(transforms.Resize(size))
    if "flip" in augment:  # not for captions that say left and right
        steps.append(transforms.RandomHorizontalFlip())
    if "jitter" in augment:
        steps.append(transforms.ColorJitter(0.2, 0.2, 0.2))
    return transforms.Compose([*steps, transforms.ToTensor(), transforms.Normalize(mean, std)])


def image_array(image: torch.Tensor, settings: dict[str, Any] | None) -> np.ndarray:
    """A normalized image (3, H, W) -> uint8 (H, W, 3), undoing the data's ``mean``/``std``
    (without them, stretched to 0..1)."""
    image = image.detach().float().cpu()
    if settings is not None:
        mean = torch.tensor(settings["mean"]).view(3, 1, 1)
        std = torch.tensor(settings["std"]).view(3, 1, 1)
        image = image * std + mean
    else:
        image = (image - image.min()) / (image.max() - image.min()).clamp(min=1e-8)
    return (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


# ---- readers: split name -> images with their references ----
def read_flickr8k_captions(token_file: Path) -> dict[str, list[str]]:
    """Image file name -> its captions, from ``Flickr8k.token.txt``."""
    if not token_file.is_file():
        raise UserError(f"no caption file {token_file}")
    captions: dict[str, list[str]] = {}
    with open(token_file, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            if "\t" not in line:
                raise UserError(
                    f"{token_file}:{number}: no tab; expected '<image>#<n><TAB><caption>'"
                )
            key, caption = line.rstrip("\n").split("\t", 1)
            captions.setdefault(key.rsplit("#", 1)[0], []).append(caption.strip())
    return captions


def read_flickr8k_split(directory: Path, image_dir: Path, stage: str) -> list[CaptionedImage]:
    split_file = directory / f"Flickr_8k.{FLICKR8K_SPLITS[stage]}.txt"
    if not split_file.is_file():
        raise UserError(f"no split file {split_file}")
    captions = read_flickr8k_captions(directory / "Flickr8k.token.txt")
    names = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    return _present(stage, [(image_dir / name, captions.get(name, [])) for name in names])


def read_karpathy_split(annotations: Path, image_dir: Path, stage: str) -> list[CaptionedImage]:
    if not annotations.is_file():
        raise UserError(f"no annotation file {annotations}")
    try:
        entries = json.loads(annotations.read_text(encoding="utf-8"))["images"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise UserError(
            f"{annotations}: not a Karpathy dataset_*.json ({type(error).__name__})"
        ) from None
    pairs = []
    for entry in entries:
        if entry.get("split") in KARPATHY_SPLITS[stage]:
            path = image_dir / entry.get("filepath", "") / entry["filename"]
            pairs.append((path, [s["raw"].strip() for s in entry.get("sentences", [])]))
    return _present(stage, pairs)


def read_hf_split(
    hub_id: str, split: str, image_column: str, captions_column: str
) -> list[CaptionedImage]:
    """A Hugging Face dataset split (hub id or local directory) with an image column and a
    captions column (a list of strings or one string per row); rows without captions are
    skipped with a logged count."""
    try:
        rows = datasets.load_dataset(hub_id, split=split)
    except Exception as error:  # offline, unknown id or split: all end the same way
        raise UserError(
            f"cannot load '{hub_id}' split '{split}' with datasets ({type(error).__name__}); "
            "offline, give data.hub_id a local directory"
        ) from None
    missing = [c for c in (image_column, captions_column) if c not in rows.column_names]
    if missing:
        raise UserError(
            f"{hub_id}[{split}] has no column '{missing[0]}' "
            f"(columns: {', '.join(rows.column_names)}): set data.image_column/captions_column"
        )
    records = []
    for index, captions in enumerate(rows[captions_column]):
        captions = [captions] if isinstance(captions, str) else list(captions or [])
        references = tuple(c.strip() for c in captions if c and c.strip())
        if references:
            records.append(CaptionedImage(DatasetImage(rows, index, image_column), references))
    if len(records) < len(rows):
        log.warning("skipped %d %s rows without captions", len(rows) - len(records), split)
    if not records:
        raise UserError(f"{hub_id}[{split}] has no row with captions")
    return records


def _present(stage: str, pairs: list[tuple[Path, list[str]]]) -> list[CaptionedImage]:
    """The images that exist and have captions; the others are counted in a warning."""
    kept = [CaptionedImage(path, tuple(refs)) for path, refs in pairs if refs and path.is_file()]
    missing = [path for path, _ in pairs if not path.is_file()]
    uncaptioned = [path for path, refs in pairs if not refs and path.is_file()]
    if missing:
        log.warning(
            "skipped %d of %d %s images listed but absent (first: %s)",
            len(missing),
            len(pairs),
            stage,
            missing[0],
        )
    if uncaptioned:
        log.warning(
            "skipped %d %s images without captions (first: %s)",
            len(uncaptioned),
            stage,
            uncaptioned[0],
        )
    if not kept:
        raise UserError(f"the {stage} split has no image with captions")
    return kept


# ---- datasets and batches ----
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
            image = load_image(record, self.image_size)
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

    def _epoch_batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch + 7919)
        draws = (torch.rand(len(self.count), generator=generator) * self.count).long()
        chosen = (self.first + draws).tolist()  # draws < count: rand() < 1
        return [[chosen[i] for i in batch] for batch in super()._epoch_batches()]


class CaptioningDataModule(TokenizedDataModule):
    def __init__(
        self,
        cache_dir: str,
        source: str = "shapes",
        path: str | None = None,
        image_dir: str = "images",
        annotations: str | None = None,
        hub_id: str | None = None,
        hub_splits: dict[str, str] | None = None,
        image_column: str = "image",
        captions_column: str = "captions",
        shapes: dict[str, int] | None = None,
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
        if source not in SOURCES:
            raise UserError(f"data.source='{source}': choose one of {', '.join(SOURCES)}")
        if captions_per_image not in ("one", "all"):
            raise UserError(f"data.captions_per_image='{captions_per_image}': choose one or all")
        unknown = sorted(set(augment or []) - set(AUGMENTATIONS))
        if unknown:
            raise UserError(f"data.augment: unknown '{unknown[0]}'; choose from {AUGMENTATIONS}")
        self.cache_dir = Path(cache_dir)
        self.source = source
        self.path = Path(path) if path else None
        self.image_dir, self.annotations = image_dir, annotations
        self.hub_id = hub_id
        self.hub_splits = {"train": "train", "val": "validation", "test": "test"}
        self.hub_splits |= hub_splits or {}
        self.image_column, self.captions_column = image_column, captions_column
        self.shapes = {"train": 4000, "val": 200, "test": 200, "seed": 0, **(shapes or {})}
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
    def read_split(self, stage: str) -> list[CaptionedImage]:
        if self.source == "shapes":
            return [
                CaptionedImage(scene, tuple(scene.captions()))
                for scene in (
                    generate_scene(self.shapes["seed"], stage, i) for i in range(self.shapes[stage])
                )
            ]
        if self.source == "hf":
            if not self.hub_id:
                raise UserError("data.source=hf needs data.hub_id (a hub id or local directory)")
            split = self.hub_splits[stage]
            return read_hf_split(self.hub_id, split, self.image_column, self.captions_column)
        if self.path is None:
            raise UserError(f"data.source={self.source} needs data.path (the dataset directory)")
        if not self.path.is_dir():
            raise UserError(f"data.path '{self.path}' is not a directory")
        image_dir = self.path / self.image_dir
        if self.source == "flickr8k":
            return read_flickr8k_split(self.path, image_dir, stage)
        if not self.annotations:
            raise UserError("data.source=karpathy needs data.annotations (dataset_*.json)")
        return read_karpathy_split(self.path / self.annotations, image_dir, stage)

    def records(self, stage: str) -> list[CaptionedImage]:
        if stage not in self._records:
            self._records[stage] = self.read_split(stage)
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
        trainer = self.trainer
        sharding = {
            "seed": self.seed,
            "num_replicas": trainer.world_size if trainer else 1,
            "rank": trainer.global_rank if trainer else 0,
        }
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

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
