"""Image captioning: shapes data, the captioning data module (Flickr8k / Karpathy layouts, bad
input), image encoders, the captioners through the shared search, and train -> evaluate."""

import io
import json
import logging
from pathlib import Path

import hydra
import lightning as L
import numpy as np
import pytest
import torch
import torchvision
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader

from encdec.data.caption_readers import (
    Flickr8kReader,
    HFCaptionsReader,
    KarpathyReader,
    ShapesReader,
)
from encdec.data.captioning import CaptioningDataModule, OneCaptionPerImageSampler, collate_captions
from encdec.data.images import image_transform, to_rgb
from encdec.data.shapes import draw_scene, generate_scene
from encdec.data.tokenization import BOS_ID, EOS_ID, Seq2SeqTokenizer, load_or_train_tokenizer
from encdec.decoding.search import DecodingConfig, beam_search, greedy_search, max_output_lengths
from encdec.evaluate import evaluate
from encdec.inference.captioner import Captioner
from encdec.launch.validation import validate_config
from encdec.modules.image_encoders import ResNetEncoder
from encdec.train import train
from encdec.training.building import load_model
from encdec.utils.config import CONFIG_DIR
from encdec.utils.errors import UserError
from encdec.utils.plots import save_attention_overlay
from tests.conftest import FAST, SHARED_DATA, VOCAB, build_tiny, compose_config
from tests.test_entry_points import _cli

CNN = ["model.net.encoder.channels=[8,16]"]
VIT = [
    "model/net/encoder=vit",
    *(f"model.net.encoder.{key}" for key in (
        "patch_size=8", "dim=16", "num_layers=1", "num_heads=2", "ff_dim=32"
    )),
]  # fmt: skip
ATTENTION = ["model=caption_attention", "model.net.embedding_dim=16"]
TRANSFORMER = [
    "model=caption_transformer",
    "model.net.embedding_dim=32",
    "model.net.decoder.dim=32",
    "model.net.decoder.ff_dim=64",
]
TINY_CAPTIONERS = {  # overrides of the real captioning configs
    "attention-lstm-gated-cnn": [*ATTENTION, *CNN, "model.net.decoder.hidden_size=32"],
    "attention-gru-general-vit": [
        *ATTENTION,
        *VIT,
        "model.net.decoder.hidden_size=32",
        "model.net.decoder.cell=gru",
        "model.net.decoder.attention=general",
        "model.net.decoder.context_gate=false",
    ],
    "transformer-cnn": [*TRANSFORMER, *CNN, "model.net.decoder.num_layers=2"],
    "transformer-vit-postnorm": [
        *TRANSFORMER,
        *VIT,
        "model.net.decoder.num_heads=2",
        "model.net.decoder.num_layers=1",
        "model.net.decoder.norm_first=false",
        "model.net.tie_output=false",
    ],
}


def tiny_captioner_model(name: str, *overrides: str, vocab: int = VOCAB):
    return build_tiny([*TINY_CAPTIONERS[name], *overrides], {"target_vocab_size": vocab})


# ---- shapes ----
def test_shape_scenes_are_deterministic_with_captions_in_both_orders():
    scenes = [generate_scene(3, "train", i) for i in range(50)]
    assert scenes == [generate_scene(3, "train", i) for i in range(50)]
    assert scenes != [generate_scene(3, "test", i) for i in range(50)]
    two = next(s for s in scenes if len(s.shapes) == 2)
    left, right = two.shapes
    assert left.x < right.x
    captions = two.captions()
    assert captions[0] == f"{left.phrase()} left of {right.phrase()}"
    assert captions[1] == f"{right.phrase()} right of {left.phrase()}"
    one = next(s for s in scenes if len(s.shapes) == 1)
    assert one.captions() == [one.shapes[0].phrase()]
    image = draw_scene(two, 48)
    assert image.size == (48, 48) and image.mode == "RGB"
    assert len(set(image.getdata())) >= 3  # background and two colours


def test_shapes_module_serves_batches_and_all_references(tmp_path):
    data = CaptioningDataModule(str(tmp_path), ShapesReader(40, 6, 6), image_size=32, batch_size=8)
    data.prepare_data()
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["source"].shape == (8, 3, 32, 32)
    assert (batch["target_in"][:, 0] == BOS_ID).all()
    lengths = (batch["target_out"] != 0).sum(1)
    assert (batch["target_out"][torch.arange(8), lengths - 1] == EOS_ID).all()
    val = next(iter(data.val_dataloader()))
    assert val["index"].tolist() == list(range(6))
    records = data.records("val")
    assert val["references"] == [list(r.references) for r in records]
    decoded = data.tokenizer.decode_target(val["target_out"][0].tolist())
    assert decoded == records[0].references[0]


def test_one_caption_per_image_is_drawn_per_epoch_from_the_seed(tmp_path):
    def chosen(seed: int, epoch: int) -> list[int]:
        data = CaptioningDataModule(
            str(tmp_path), ShapesReader(train=60), image_size=16, batch_size=7, seed=seed
        )
        data.setup("fit")
        sampler = data.train_dataloader().batch_sampler
        sampler.set_epoch(epoch)
        examples = data.datasets["train"].examples
        return sorted(examples[i] for batch in sampler for i in batch)

    first = chosen(0, 0)
    images = [image for image, _ in first]
    assert images == sorted(set(images)) and len(images) == 60  # each image once per epoch
    assert chosen(0, 0) == first
    assert chosen(0, 1) != first  # another caption for some two-shape scenes
    assert chosen(1, 0) != first  # the same scenes (their own seed), other draws


class _EpochRecorder(L.LightningModule):
    """Records, per training step, the epoch its batch sampler was serving."""

    def __init__(self, sampler: OneCaptionPerImageSampler) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.sampler = sampler
        self.epochs: list[int] = []

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        self.epochs.append(self.sampler.epoch)
        return (self.weight * batch.float()).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_moves_the_caption_sampler_to_each_new_epoch():
    """Lightning calls set_epoch on ``batch_sampler.sampler`` only; the sampler must be found."""
    sampler = OneCaptionPerImageSampler(list(range(8)), [1] * 8, batch_size=4)
    loader = DataLoader(range(8), batch_sampler=sampler, collate_fn=torch.tensor)
    model = _EpochRecorder(sampler)
    trainer = L.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader)
    assert model.epochs == [0, 0, 1, 1, 2, 2]


def test_target_only_tokenizer_round_trips(tmp_path):
    captions = ["a small red circle", "a large blue square"]
    settings = {"kind": "word", "vocab_size": 50, "min_frequency": 1}
    tokenizer = load_or_train_tokenizer(tmp_path, None, captions, **settings)
    assert tokenizer.source is None and not tokenizer.joint
    assert tokenizer.vocab_sizes() == {"target_vocab_size": 4 + 7}
    with pytest.raises(ValueError, match="no source side"):
        tokenizer.encode_source(["x"])
    ids = tokenizer.encode_target(captions)
    for restored in (
        Seq2SeqTokenizer.from_dict(tokenizer.to_dict()),
        load_or_train_tokenizer(tmp_path, None, captions, **settings),
    ):
        assert restored.source is None and restored.encode_target(captions) == ids
    assert sorted(p.name for p in tmp_path.glob("tokenizer-*/*")) == ["tokenizer.target.json"]


# ---- Flickr8k and Karpathy layouts, bad input ----
def _image(mode: str, colour) -> Image.Image:
    return Image.new(mode, (20, 12), colour)


def _save(image: Image.Image, path: Path, fmt: str, **kwargs) -> None:
    image.save(path, format=fmt, **kwargs)


def _fake_flickr8k(directory: Path) -> dict[str, list[str]]:
    """Six images in every mode the reader must handle; returns the split lists."""
    images = directory / "images"
    images.mkdir(parents=True)
    _save(_image("RGB", (200, 10, 10)), images / "1_rgb.jpg", "JPEG")
    _save(_image("L", 128), images / "2_gray.jpg", "JPEG")
    _save(_image("CMYK", (0, 255, 255, 0)), images / "3_cmyk.jpg", "JPEG")
    _save(_image("RGBA", (0, 0, 255, 0)), images / "4_rgba.jpg", "PNG")  # PNG inside .jpg
    palette = Image.new("P", (20, 12), 0)
    palette.putpalette([0, 255, 0, 10, 10, 10])
    _save(palette, images / "5_palette.jpg", "PNG", transparency=0)
    _save(_image("RGB", (1, 2, 3)), images / "6_nocaption.jpg", "JPEG")
    lines = [
        f"{n}.jpg#{k}\t{n} caption number {k} ." for n in "1_rgb 2_gray".split() for k in (0, 1)
    ]
    lines += [f"{n}.jpg#0\tA {n} image ." for n in "3_cmyk 4_rgba 5_palette 7_absent".split()]
    lines += ["2258277193_586949ec62.jpg.1#0\tthe quirk line names no image", ""]
    (directory / "Flickr8k.token.txt").write_text("\n".join(lines))
    splits = {
        "train": ["1_rgb.jpg", "2_gray.jpg", "3_cmyk.jpg", "6_nocaption.jpg", "7_absent.jpg"],
        "val": ["4_rgba.jpg"],
        "test": ["5_palette.jpg"],
    }
    for stage, name in (("train", "train"), ("val", "dev"), ("test", "test")):
        (directory / f"Flickr_8k.{name}Images.txt").write_text("\n".join(splits[stage]) + "\n")
    return splits


def _flickr_module(directory: Path, **kwargs) -> CaptioningDataModule:
    settings = {
        "source": Flickr8kReader(),
        "path": str(directory),
        "image_size": 16,
        "batch_size": 4,
    }
    return CaptioningDataModule(str(directory / "cache"), **{**settings, **kwargs})


def test_flickr8k_layout_reads_references_and_skips_absent_images(tmp_path, caplog):
    _fake_flickr8k(tmp_path)
    data = _flickr_module(tmp_path, captions_per_image="all")
    with caplog.at_level(logging.WARNING):
        train_records = data.records("train")
    assert [r.image.name for r in train_records] == ["1_rgb.jpg", "2_gray.jpg", "3_cmyk.jpg"]
    assert train_records[0].references == ("1_rgb caption number 0 .", "1_rgb caption number 1 .")
    assert "skipped 1 of 5 train images listed but absent" in caplog.text
    assert "skipped 1 train images without captions" in caplog.text
    data.prepare_data()
    data.setup()
    batches = list(data.train_dataloader())  # 5 captions of 3 images, in batches of 4
    assert sorted(b["source"].shape[0] for b in batches) == [1, 4]
    assert batches[0]["source"].shape[1:] == (3, 16, 16)
    assert data.tokenizer.decode_target(data.datasets["train"].caption_ids[0][0]) == (
        "1_rgb caption number 0"  # trained on lowercased words, punctuation dropped
    )
    for stage in ("val", "test"):
        (batch,) = list(getattr(data, f"{stage}_dataloader")())
        assert batch["source"].shape == (1, 3, 16, 16)
    in_workers = _flickr_module(tmp_path, captions_per_image="all", num_workers=2)
    in_workers.setup("fit")  # images decoded in two DataLoader worker processes
    decoded = sorted(b["index"].tolist() for b in in_workers.train_dataloader())
    assert sorted(sum(decoded, [])) == [0, 0, 1, 1, 2]


def test_grayscale_cmyk_rgba_and_palette_images_become_rgb(tmp_path):
    _fake_flickr8k(tmp_path)
    for name, expected in [
        ("1_rgb.jpg", None),
        ("2_gray.jpg", None),
        ("3_cmyk.jpg", None),
        ("4_rgba.jpg", (255, 255, 255)),  # fully transparent: white, not the hidden blue
        ("5_palette.jpg", (255, 255, 255)),  # palette index 0 is transparent
    ]:
        with Image.open(tmp_path / "images" / name) as image:
            rgb = to_rgb(image)
        assert rgb.mode == "RGB"
        if expected:
            assert rgb.getpixel((0, 0)) == expected


def test_corrupt_images_are_skipped_from_their_batch_with_a_warning(tmp_path, caplog):
    _fake_flickr8k(tmp_path)
    (tmp_path / "images" / "2_gray.jpg").write_bytes(b"this is not an image")
    jpeg = io.BytesIO()
    _image("RGB", (5, 5, 5)).save(jpeg, format="JPEG")
    (tmp_path / "images" / "3_cmyk.jpg").write_bytes(jpeg.getvalue()[:200])  # truncated
    data = _flickr_module(tmp_path, batch_size=8)
    data.setup("fit")
    with caplog.at_level(logging.WARNING):
        (batch,) = list(data.train_dataloader())
    assert batch["source"].shape[0] == 1  # only 1_rgb.jpg decodes
    assert "skipped image" in caplog.text and "2_gray.jpg" in caplog.text
    assert "3_cmyk.jpg" in caplog.text
    assert collate_captions([None, None]) is None  # a batch of undecodable images is skipped


def test_bad_layouts_give_one_clear_line(tmp_path):
    _fake_flickr8k(tmp_path)
    token_file = tmp_path / "Flickr8k.token.txt"
    captions = token_file.read_text()
    token_file.write_text(captions + "9_x.jpg#0 a caption without a tab\n")
    with pytest.raises(UserError, match=r"Flickr8k.token.txt:10: no tab"):
        _flickr_module(tmp_path).records("train")
    token_file.write_text(captions)
    with pytest.raises(UserError, match="needs data.path"):
        CaptioningDataModule(str(tmp_path), Flickr8kReader()).records("train")
    with pytest.raises(UserError, match="is not a directory"):
        _flickr_module(tmp_path / "nowhere").records("train")
    (tmp_path / "Flickr_8k.devImages.txt").unlink()
    with pytest.raises(UserError, match="no split file"):
        _flickr_module(tmp_path).records("val")
    with pytest.raises(UserError, match="data.augment: unknown 'rotate'"):
        CaptioningDataModule(str(tmp_path), augment=["rotate"])
    for image in (tmp_path / "images").iterdir():
        image.unlink()
    with pytest.raises(UserError, match="the train split has no image with captions"):
        _flickr_module(tmp_path).records("train")


def test_karpathy_json_layout(tmp_path):
    (tmp_path / "val2014").mkdir()
    _save(_image("RGB", (1, 1, 1)), tmp_path / "val2014" / "a.jpg", "JPEG")
    _save(_image("L", 9), tmp_path / "val2014" / "b.jpg", "JPEG")
    entries = [
        {"filepath": "val2014", "filename": "a.jpg", "split": "restval",
         "sentences": [{"raw": "A cat ."}, {"raw": "A small cat ."}]},
        {"filepath": "val2014", "filename": "b.jpg", "split": "test",
         "sentences": [{"raw": "A dog ."}]},
    ]  # fmt: skip
    (tmp_path / "dataset_coco.json").write_text(json.dumps({"images": entries}))
    data = CaptioningDataModule(
        str(tmp_path / "cache"),
        KarpathyReader("dataset_coco.json", image_dir="."),
        path=str(tmp_path),
        image_size=16,
    )
    assert data.training_references() == [["A cat .", "A small cat ."]]  # restval trains
    assert [r.references for r in data.records("test")] == [("A dog .",)]
    (tmp_path / "broken.json").write_text("{not json")
    data.source.annotations = "broken.json"
    data._records.clear()
    with pytest.raises(UserError, match="not a Karpathy dataset"):
        data.records("train")


def _imagefolder(directory: Path, rows: dict[str, list[tuple[str, str, object]]]) -> str:
    """An imagefolder dataset: per split, images and a metadata.jsonl with a captions column."""
    for split, entries in rows.items():
        (directory / split).mkdir(parents=True)
        lines = []
        for name, mode, captions in entries:
            Image.new(mode, (10, 10)).save(directory / split / name)
            lines.append(json.dumps({"file_name": name, "captions": captions}))
        (directory / split / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return str(directory)


def test_hugging_face_image_dataset_from_a_local_directory(tmp_path, caplog):
    """The datasets code path on an imagefolder with metadata.jsonl, as a hub repo is read."""
    rows = {
        "train": [
            ("a.png", "RGB", ["A red image .", "red"]),
            ("b.png", "RGB", ["one caption"]),
            ("c.png", "RGB", []),
        ],
        "validation": [("d.png", "L", ["a gray image"])],
        "test": [("e.png", "RGBA", ["an RGBA image"])],
    }
    hub_id = _imagefolder(tmp_path / "lists", rows)
    data = CaptioningDataModule(
        str(tmp_path / "cache"), HFCaptionsReader(hub_id), image_size=16, batch_size=4
    )
    with caplog.at_level(logging.WARNING):
        assert data.training_references() == [["A red image .", "red"], ["one caption"]]
    assert "skipped 1 train rows without captions" in caplog.text
    one_each = {split: [(f"{split}.png", "RGB", "a caption")] for split in rows}
    single = CaptioningDataModule(
        "unused", HFCaptionsReader(_imagefolder(tmp_path / "one", one_each))
    )
    assert single.training_references() == [["a caption"]]  # a string column: one reference
    data.prepare_data()
    data.setup()
    for loader in (data.train_dataloader(), data.val_dataloader(), data.test_dataloader()):
        for batch in loader:
            assert batch["source"].shape[1:] == (3, 16, 16)
    bad = CaptioningDataModule("unused", HFCaptionsReader(hub_id, captions_column="text"))
    with pytest.raises(UserError, match="has no column 'text'"):
        bad.records("train")


@pytest.mark.skipif(not (SHARED_DATA / "flickr8k").is_dir(), reason="../shared/data absent")
def test_real_flickr8k_splits_and_a_few_images(tmp_path):
    data = _flickr_module(SHARED_DATA / "flickr8k", image_size=32)
    data.cache_dir = tmp_path
    counts = {stage: len(data.records(stage)) for stage in ("train", "val", "test")}
    assert counts == {"train": 6000, "val": 1000, "test": 1000}
    assert all(len(r.references) == 5 for r in data.records("test"))
    data.tokenizer = load_or_train_tokenizer(tmp_path, None, ["a dog"], kind="word", vocab_size=9)
    dataset = data.build_dataset("test", data.tokenizer)
    for position in range(3):
        assert dataset[position]["image"].shape == (3, 32, 32)


# ---- encoders ----
@pytest.mark.parametrize(
    ("option", "settings", "cells"),
    [
        ("cnn", {"channels": [8, 16]}, 16 * 16),
        ("vit", {"patch_size": 8}, 8 * 8),
        ("resnet", {}, 2 * 2),
    ],
)
def test_image_encoders_return_a_grid_and_an_all_true_mask(option, settings, cells):
    config = OmegaConf.load(Path(CONFIG_DIR) / "model" / "net" / "encoder" / f"{option}.yaml")
    encoder = hydra.utils.instantiate(OmegaConf.merge(config, settings))().eval()
    encoded = encoder(torch.randn(2, 3, 64, 64))
    assert encoded.states.shape == (2, cells, encoder.output_size)
    assert encoded.mask.shape == (2, cells) and encoded.mask.all()


def test_pretrained_resnet_offline_is_one_clear_line(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(UserError, match="pretrained weights for resnet18 are unavailable"):
        ResNetEncoder("resnet18", pretrained=True)


def test_frozen_resnet_keeps_weights_and_batchnorm_statistics(monkeypatch):
    state = torchvision.models.resnet18(weights=None).state_dict()
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", lambda *a, **k: state)
    encoder = ResNetEncoder("resnet18", pretrained=True, freeze=True).train()
    assert not any(p.requires_grad for p in encoder.trunk.parameters())
    assert not encoder.trunk.training  # BatchNorm statistics stay the pretrained ones
    torch.testing.assert_close(encoder.trunk[0].weight, state["conv1.weight"])


def test_image_encoder_gets_its_own_learning_rate(monkeypatch):
    model = tiny_captioner_model("attention-lstm-gated-cnn", "model.encoder_lr=1e-4")
    (encoder, encoder_options), (decoder, decoder_options) = model.parameter_groups()
    assert encoder_options == {"lr": 1e-4} and decoder_options == {}
    assert {id(p) for p in encoder} == {id(p) for p in model.net.encoder.parameters()}
    assert len(encoder) + len(decoder) == len(list(model.parameters()))
    state = torchvision.models.resnet18(weights=None).state_dict()
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", lambda *a, **k: state)
    frozen = [
        "model/net/encoder=resnet",
        "model.net.encoder.pretrained=true",
        "model.net.encoder.freeze=true",
        "model.encoder_lr=1e-4",
    ]
    model = build_tiny([*ATTENTION, *frozen], {"target_vocab_size": VOCAB})
    groups = model.parameter_groups()
    trunk = {id(p) for p in model.net.encoder.trunk.parameters()}
    assert not any(id(p) in trunk for parameters, _ in groups for p in parameters)


# ---- captioners through the shared search ----
@pytest.fixture(params=sorted(TINY_CAPTIONERS))
def tiny_captioner(request: pytest.FixtureRequest):
    """Each tiny captioner's network, in eval mode."""
    torch.manual_seed(0)
    return tiny_captioner_model(request.param).net.eval()


def test_captioner_greedy_equals_beam_of_one_and_batching_changes_nothing(tiny_captioner):
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 1, dtype=torch.bool)
    limits = max_output_lengths(mask, 0.0, 6, cap=100)
    greedy = greedy_search(tiny_captioner, images, mask, limits)
    beam = beam_search(tiny_captioner, images, mask, limits, beam_size=1)
    assert [h.tokens for h in greedy] == [b[0].tokens for b in beam]
    batched = beam_search(tiny_captioner, images, mask, limits, beam_size=3, alpha=0.6)
    for row in range(3):
        alone = beam_search(
            tiny_captioner, images[row : row + 1], mask[:1], limits[:1], beam_size=3, alpha=0.6
        )
        assert alone[0][0].tokens == batched[row][0].tokens


def test_attention_captioner_adds_the_doubly_stochastic_penalty():
    torch.manual_seed(0)
    model = tiny_captioner_model("attention-lstm-gated-cnn").eval()  # no dropout: same logits
    images = torch.randn(2, 3, 32, 32)
    batch = {
        "source": images,
        "source_mask": torch.ones(2, 1, dtype=torch.bool),
        "target_in": torch.tensor([[BOS_ID, 5, 6, 7], [BOS_ID, 8, 0, 0]]),
        "target_out": torch.tensor([[5, 6, 7, EOS_ID], [8, EOS_ID, 0, 0]]),
    }
    memory = model.net.encode(images, torch.ones(2, 1, dtype=torch.bool))
    _, weights = model.net.decoder(batch["target_in"], memory)
    assert weights.shape == (2, 4, 8 * 8)  # over every grid cell, per step
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4))
    real = (batch["target_out"] != 0).unsqueeze(2)
    penalty = ((1 - (weights * real).sum(1)) ** 2).mean()
    with_penalty = model.training_step(batch, 0)
    model.attention_regularization = 0.0
    without = model.training_step(batch, 0)
    torch.testing.assert_close(with_penalty - without, penalty)


def _shapes_batch(count: int, size: int, tokenizer: Seq2SeqTokenizer):
    """The first ``count`` training scenes as a batch, prepared as data=caption_shapes does."""
    scenes = [generate_scene(0, "train", i) for i in range(count)]
    transform = image_transform(size, mean=[0.5] * 3, std=[0.25] * 3)
    captions = [s.captions()[0] for s in scenes]
    examples = [
        {"image": transform(draw_scene(scene, size)), "target_ids": ids, "references": [caption]}
        | {"index": index}
        for index, (scene, ids, caption) in enumerate(
            zip(scenes, tokenizer.encode_target(captions), captions, strict=True)
        )
    ]
    return collate_captions(examples), captions


@pytest.mark.slow  # 3 s alone, but 164 s once inside the full suite (not yet understood)
@pytest.mark.parametrize("family", ["attention", "transformer"])
def test_captioners_overfit_a_small_batch_of_shapes(tmp_path, family):
    every = [c for i in range(200) for c in generate_scene(0, "train", i).captions()]
    tokenizer = load_or_train_tokenizer(tmp_path, None, every, kind="word", vocab_size=50)
    batch, captions = _shapes_batch(8, 32, tokenizer)
    torch.manual_seed(0)
    vocab = tokenizer.target_vocab_size
    parts = ["model.net.encoder.channels=[16,32]", "model.net.decoder.dropout=0.0"]
    if family == "attention":
        sizes = ["model.net.embedding_dim=32", "model.net.decoder.hidden_size=64"]
    else:
        sizes = [*TRANSFORMER[1:], "model.net.decoder.num_layers=2"]
    model = build_tiny([f"model=caption_{family}", *parts, *sizes], {"target_vocab_size": vocab})
    model.net.attach_tokenizer(tokenizer)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    images, mask = batch["source"], batch["source_mask"]
    for _ in range(300):
        logits = model(images, mask, batch["target_in"])
        loss_sum, tokens = model.loss(logits, batch["target_out"])
        optimizer.zero_grad()
        (loss_sum / tokens).backward()
        optimizer.step()
    assert Captioner(model.net, None).caption(images) == captions


# ---- the entry points ----
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["+model.net.encoder.chanels=[8]"],
            "unknown key 'model.net.encoder.chanels'; did you mean",
        ),
        (
            ["model.net.encoder._target_=encdec.modules.image_encoders.VGG"],
            "model.net.encoder._target_: cannot import 'encdec.modules.image_encoders.VGG'",
        ),
        (
            ["model/net/encoder=vit", "model.net.encoder.num_heads=0"],
            "model.net.encoder.num_heads=0: must be",
        ),
        (
            ["data.source._target_=encdec.data.caption_readers.CocoReader"],
            "data.source._target_: cannot import",
        ),
        (["data.captions_per_image=1"], "expected a string"),
        (["data.batch_size=0"], r"data.batch_size=0: must be in \[1, inf\)"),
        (["model.encoder_lr=-1"], r"model.encoder_lr=-1: must be in \(0, inf\)"),
    ],
)
def test_caption_config_errors_name_the_key(tmp_path, overrides, message):
    base = ["data=caption_shapes", "model=caption_attention"]
    with pytest.raises(UserError, match=message):
        validate_config(compose_config("train", [*base, *overrides], tmp_path / "run"))


TINY_SHAPES = [
    "data.source.train=48",
    "data.source.val=8",
    "data.source.test=8",
    "data.image_size=32",
    "data.batch_size=16",
]


@pytest.mark.parametrize(
    ("model", "tiny"),
    [
        ("caption_attention", [*ATTENTION[1:], "model.net.decoder.hidden_size=32"]),
        ("caption_transformer", [*TRANSFORMER[1:], "model.net.decoder.num_layers=1"]),
    ],
)
def test_train_evaluate_and_caption_with_a_loaded_checkpoint(tmp_path, model, tiny):
    overrides = [
        "data=caption_shapes",
        f"model={model}",
        *TINY_SHAPES,
        "model.net.encoder.channels=[8, 16]",
        *tiny,
        *FAST,
        "callbacks=default",
        "~callbacks.lr_monitor",
        "decoding.beam_size=2",
    ]
    metrics = train(compose_config("train", overrides, tmp_path / "train"))
    for name in ("test/bleu_4_beam2", "test/cider_beam2", "test/rouge_l_beam2", "test/ppl"):
        assert name in metrics
    best = tmp_path / "train" / "checkpoints" / "best.ckpt"
    cfg = compose_config(
        "evaluate",
        [f"ckpt_path={best}", "data=caption_shapes", *TINY_SHAPES, "logger=csv",
         "decoding.beam_size=2", "trainer.limit_test_batches=1",
         "trainer.enable_progress_bar=false"],
        tmp_path / "eval",
    )  # fmt: skip
    evaluated = evaluate(cfg)
    for name, value in evaluated.items():
        assert value == pytest.approx(metrics[name], abs=1e-6), name
    predictions = (tmp_path / "eval" / "predictions" / "test_beam2.txt").read_text()
    assert predictions == (tmp_path / "train" / "predictions" / "test_beam2.txt").read_text()
    loaded = Captioner.from_checkpoint(best)
    batch, _ = _shapes_batch(2, 32, loaded.network.tokenizer)
    from_tensors = loaded.caption(batch["source"], loaded.decoding)
    module = load_model(best)  # the LightningModule: the same network and image preparation
    assert Captioner(module.net, module.image_settings).caption(batch["source"]) == from_tensors
    scenes = [tmp_path / "scene0.png", tmp_path / "scene1.png"]
    for index, path in enumerate(scenes):
        draw_scene(generate_scene(0, "train", index), 32).save(path)
    assert loaded.caption_files(scenes, loaded.decoding) == from_tensors  # same preparation
    greedy = DecodingConfig(
        max_len_a=loaded.decoding.max_len_a, max_len_b=loaded.decoding.max_len_b
    )
    overlays = loaded.overlay_attention(scenes, tmp_path / "overlays")
    assert [caption for caption, _ in overlays] == loaded.caption_files(scenes, greedy)
    for _, png in overlays:
        assert png.parent == tmp_path / "overlays" and png.read_bytes()[:4] == b"\x89PNG"
    if model == "caption_attention":
        result = _cli(
            "encdec.caption",
            f"ckpt_path={best}",
            f'image=["{scenes[0]}","{scenes[1]}"]',
            env={"PYTHONPROFILEIMPORTTIME": "1"},  # every import, on stderr
        )
        assert result.returncode == 0, result.stderr[-3000:]
        lines = result.stderr.splitlines()
        imported = {line.split("|")[-1].strip().split(".")[0] for line in lines}
        assert not {"lightning", "torchmetrics"} & imported  # the network alone, as translate
        as_configured = loaded.decoding.updated({"beam_size": 3})  # caption.yaml: beam 3
        assert result.stdout.splitlines() == loaded.caption_files(scenes, as_configured)
        overlay_dir = tmp_path / "cli_overlays"
        drawn = _cli(
            "encdec.caption",
            f"ckpt_path={best}",
            f"image={scenes[0]}",
            f"overlay_dir={overlay_dir}",
        )
        assert drawn.returncode == 0, drawn.stderr
        caption = loaded.caption_files(scenes[:1], greedy)[0]  # overlays: greedy
        assert drawn.stdout.splitlines() == [f"{caption}\t{overlay_dir / 'scene0.png'}"]
        bad = _cli("encdec.caption", f"ckpt_path={best}", f"image={tmp_path / 'none.png'}")
        assert bad.returncode == 2 and "error: cannot read image" in bad.stderr
        text = _cli("encdec.translate", f"ckpt_path={best}", stdin="a red circle\n")
        assert (
            text.returncode == 2
            and "holds a model of images: use python -m encdec.caption" in text.stderr
        )


def test_attention_overlay_needs_a_square_grid_and_a_word_per_step(tmp_path):
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    path = save_attention_overlay(image, np.full((2, 16), 1 / 16), ["a", "b"], tmp_path / "o.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="square grid"):
        save_attention_overlay(image, np.full((2, 15), 1 / 15), ["a", "b"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="square grid and 2 words"):
        save_attention_overlay(image, np.full((2, 16), 1 / 16), ["a"], tmp_path / "x.png")


def test_frozen_features_are_computed_once_per_image(monkeypatch, tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", lambda *a, **k: state)
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    plain = ResNetEncoder("resnet18", pretrained=True, freeze=True).eval()
    cached = ResNetEncoder("resnet18", pretrained=True, freeze=True, feature_cache=str(tmp_path))
    cached.eval()
    first = cached(images).states
    again = cached(images[[2, 0]]).states  # the same images, another batch
    assert cached.cache.computed == 3
    torch.testing.assert_close(again, first[[2, 0]])
    torch.testing.assert_close(first, plain(images).states, atol=2e-2, rtol=2e-3)  # float16 kept
    later_run = ResNetEncoder("resnet18", pretrained=True, freeze=True, feature_cache=str(tmp_path))
    torch.testing.assert_close(later_run(images).states, first)
    assert later_run.cache.computed == 0  # read from the directory
    other_weights = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    monkeypatch.setattr(
        torchvision.models._api, "load_state_dict_from_url", lambda *a, **k: other_weights
    )
    changed = ResNetEncoder("resnet18", pretrained=True, freeze=True, feature_cache=str(tmp_path))
    changed(images)
    assert changed.cache.computed == 3  # other weights: nothing stale reused
    with pytest.raises(ValueError, match="feature_cache needs freeze: true"):
        ResNetEncoder("resnet18", feature_cache="memory")
