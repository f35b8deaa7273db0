"""Readers of captioned images, one per source, each its own config (``conf/data/source/``):
``reader.read(stage, path)`` gives a split's images with every reference caption.

- ``Flickr8kReader``: the Flickr8k layout under ``path``: ``Flickr8k.token.txt``
  (``<image>#<n><TAB><caption>`` per line), ``Flickr_8k.{train,dev,test}Images.txt`` and the
  images in ``path/image_dir``;
- ``KarpathyReader``: Karpathy's ``dataset_{flickr8k,flickr30k,coco}.json`` (``annotations``,
  under ``path``) and its image folder (``restval`` images train);
- ``HFCaptionsReader``: a Hugging Face image dataset (an image column and a column with a list
  of captions, or one caption, per image) by hub id, or a local directory ``datasets`` reads
  (e.g. an imagefolder with ``metadata.jsonl``);
- ``ShapesReader``: synthetic scenes of coloured shapes (``encdec.data.shapes``), generated on
  the fly: a number of scenes per split and the scenes' own seed (so runs with different
  ``seed`` train and test on the same scenes).

A caption line without a tab is a one-line ``UserError``; images listed in a split but absent
(or without captions) are skipped with a logged count.
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import datasets
from PIL import Image

from encdec.data.images import read_image_file, to_rgb
from encdec.data.shapes import Scene, draw_scene, generate_scene
from encdec.utils.errors import UserError

log = logging.getLogger(__name__)
FLICKR8K_SPLITS = {"train": "trainImages", "val": "devImages", "test": "testImages"}
KARPATHY_SPLITS = {"train": ("train", "restval"), "val": ("val",), "test": ("test",)}


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

    def load(self, image_size: int) -> Image.Image:
        """The image as RGB (a scene is drawn at ``image_size``); raises one of
        ``images.IMAGE_ERRORS`` for a file that cannot be decoded."""
        if isinstance(self.image, Scene):
            return draw_scene(self.image, image_size)
        if isinstance(self.image, DatasetImage):
            return self.image.load()
        return read_image_file(self.image)


class CaptionReader(Protocol):
    def read(self, stage: str, path: Path | None) -> list["CaptionedImage"]:
        """The split's images with their references; ``path``: the dataset directory."""
        ...


def dataset_directory(path: Path | None, source: str) -> Path:
    if path is None:
        raise UserError(f"data/source={source} needs data.path (the dataset directory)")
    if not path.is_dir():
        raise UserError(f"data.path '{path}' is not a directory")
    return path


class ShapesReader:
    def __init__(self, train: int = 4000, val: int = 200, test: int = 200, seed: int = 0) -> None:
        self.counts, self.seed = {"train": train, "val": val, "test": test}, seed

    def read(self, stage: str, path: Path | None = None) -> list[CaptionedImage]:
        scenes = (generate_scene(self.seed, stage, i) for i in range(self.counts[stage]))
        return [CaptionedImage(scene, tuple(scene.captions())) for scene in scenes]


class Flickr8kReader:
    def __init__(self, image_dir: str = "images") -> None:
        self.image_dir = image_dir

    def read(self, stage: str, path: Path | None) -> list[CaptionedImage]:
        directory = dataset_directory(path, "flickr8k")
        split_file = directory / f"Flickr_8k.{FLICKR8K_SPLITS[stage]}.txt"
        if not split_file.is_file():
            raise UserError(f"no split file {split_file}")
        captions = read_flickr8k_captions(directory / "Flickr8k.token.txt")
        names = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
        image_dir = directory / self.image_dir
        return _present(stage, [(image_dir / name, captions.get(name, [])) for name in names])


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


class KarpathyReader:
    def __init__(self, annotations: str, image_dir: str = "images") -> None:
        self.annotations, self.image_dir = annotations, image_dir

    def read(self, stage: str, path: Path | None) -> list[CaptionedImage]:
        directory = dataset_directory(path, "karpathy")
        annotations, image_dir = directory / self.annotations, directory / self.image_dir
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


class HFCaptionsReader:
    """A split (hub id or local directory) with an image column and a captions column (a list
    of strings or one string per row); rows without captions are skipped with a logged count."""

    def __init__(
        self,
        hub_id: str,
        splits: dict[str, str] | None = None,
        image_column: str = "image",
        captions_column: str = "captions",
    ) -> None:
        self.hub_id = hub_id
        self.splits = {"train": "train", "val": "validation", "test": "test", **(splits or {})}
        self.image_column, self.captions_column = image_column, captions_column

    def read(self, stage: str, path: Path | None = None) -> list[CaptionedImage]:
        hub_id, split = self.hub_id, self.splits[stage]
        image_column, captions_column = self.image_column, self.captions_column
        try:
            rows = datasets.load_dataset(hub_id, split=split)
        except Exception as error:  # offline, unknown id or split: all end the same way
            raise UserError(
                f"cannot load '{hub_id}' split '{split}' with datasets ({type(error).__name__}); "
                "offline, give data.source.hub_id a local directory"
            ) from None
        missing = [c for c in (image_column, captions_column) if c not in rows.column_names]
        if missing:
            raise UserError(
                f"{hub_id}[{split}] has no column '{missing[0]}' "
                f"(columns: {', '.join(rows.column_names)}): "
                "set data.source.image_column/captions_column"
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
