"""TranslationDataModule: local formats, the real Multi30k layout, and clear errors on bad input."""

import gzip
import json
import logging
from pathlib import Path

import pytest
import torch

from encdec.data.collate import collate_pairs
from encdec.data.scan import ScanDataModule
from encdec.data.tokenization import BOS_ID, EOS_ID, PAD_ID
from encdec.data.translation import TranslationDataModule
from encdec.utils.errors import UserError
from tests.conftest import SHARED_DATA

PAIRS = [
    ("Ein Hund läuft.", "A dog runs."),
    ("Zwei Männer lachen.", "Two men laugh."),
    ("Eine Frau singt.", "A woman sings."),
]


def _module(directory: Path, **kwargs) -> TranslationDataModule:
    settings = {"tokenizer": {"vocab_size": 300, "min_frequency": 1}, "max_tokens": 64, **kwargs}
    return TranslationDataModule(
        "de", "en", cache_dir=str(directory / "cache"), path=str(directory), **settings
    )


def _write_parallel(directory: Path, split: str, pairs, gz: bool = False) -> None:
    for lang, column in (("de", 0), ("en", 1)):
        text = "".join(p[column] + "\n" for p in pairs).encode()
        path = directory / f"{split}.{lang}{'.gz' if gz else ''}"
        path.write_bytes(gzip.compress(text) if gz else text)


@pytest.mark.parametrize("layout", ["plain", "gz", "tsv", "jsonl", "jsonl-translation"])
def test_local_layouts_load_the_same_pairs(tmp_path, layout):
    for split in ("train", "val", "test"):
        if layout in ("plain", "gz"):
            _write_parallel(tmp_path, split, PAIRS, gz=layout == "gz")
        elif layout == "tsv":
            rows = "".join(f"{de}\t{en}\n" for de, en in PAIRS)
            (tmp_path / f"{split}.tsv").write_text("de\ten\n" + rows)
        else:
            wrap = (
                (lambda d: {"translation": d}) if layout == "jsonl-translation" else (lambda d: d)
            )
            lines = [json.dumps(wrap({"de": de, "en": en})) for de, en in PAIRS]
            (tmp_path / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    module = _module(tmp_path)
    module.setup("fit")
    assert module.texts("val") == ([p[0] for p in PAIRS], [p[1] for p in PAIRS])
    batch = next(iter(module.train_dataloader()))
    assert batch["source"].shape[0] == batch["target_in"].shape[0] >= 1
    assert (batch["target_in"][:, 0] == 2).all()  # BOS


def test_reversed_direction_swaps_languages(tmp_path):
    _write_parallel(tmp_path, "val", PAIRS)
    module = TranslationDataModule("en", "de", cache_dir=str(tmp_path / "c"), path=str(tmp_path))
    assert module.texts("val")[0][0] == "A dog runs."


def test_empty_and_overlong_training_pairs_are_dropped_with_a_count(tmp_path, caplog):
    _write_parallel(tmp_path, "train", [*PAIRS, ("", "Nothing."), ("Wort " * 40, "word")])
    _write_parallel(tmp_path, "val", PAIRS)
    module = _module(tmp_path, max_length=20)
    with caplog.at_level(logging.WARNING):
        module.setup("fit")
    assert len(module.datasets["train"]) == 3
    assert len(module.datasets["val"]) == 3
    assert "dropped 2 of 5 training pairs" in caplog.text


def test_bad_input_gives_one_clear_line(tmp_path):
    _write_parallel(tmp_path, "train", PAIRS)
    (tmp_path / "train.en").write_text("only one line\n")
    with pytest.raises(UserError, match=r"train.de has 3 lines but .*train.en has 1"):
        _module(tmp_path).texts("train")

    (tmp_path / "val.de").write_bytes(b"gut\n\xff\xfe kaputt\n")
    (tmp_path / "val.en").write_text("good\nbroken\n")
    with pytest.raises(UserError, match=r"val.de:2: not valid UTF-8"):
        _module(tmp_path).texts("val")

    (tmp_path / "test.de").write_text("")
    (tmp_path / "test.en").write_text("")
    with pytest.raises(UserError, match="the test split .* is empty"):
        _module(tmp_path).texts("test")

    with pytest.raises(UserError, match=r"no 'dev' split .*dev.de\[.gz\]"):
        _module(tmp_path, splits={"train": "dev", "val": "dev", "test": "dev"}).texts("train")

    with pytest.raises(UserError, match="is not a directory"):
        _module(tmp_path / "missing").texts("train")


def test_hub_id_offline_says_to_use_data_path(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub

    # both libraries read their offline switches at import time
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    module = TranslationDataModule(
        "de", "en", cache_dir=str(tmp_path), hub_id="bentrevett/multi30k"
    )
    with pytest.raises(UserError, match="pass data.path=DIR"):
        module.texts("train")


def test_scan_module_holds_out_val_from_train(tmp_path):
    module = ScanDataModule(cache_dir=str(tmp_path), split="length")
    train, val, test = (set(zip(*module.texts(s), strict=True)) for s in ("train", "val", "test"))
    assert not train & val and not (train | val) & test
    assert len(test) == 3920
    assert all(len(actions.split()) > 22 for _, actions in test)
    with pytest.raises(UserError, match="unknown SCAN split 'lenght'"):
        ScanDataModule(cache_dir=str(tmp_path), split="lenght")


@pytest.mark.skipif(not (SHARED_DATA / "multi30k").is_dir(), reason="../shared/data absent")
def test_real_multi30k_layout(tmp_path):
    module = TranslationDataModule(
        "de",
        "en",
        cache_dir=str(tmp_path),
        path=str(SHARED_DATA / "multi30k"),
        splits={"train": "train", "val": "val", "test": "test_2016_flickr"},
        tokenizer={"vocab_size": 4000},
    )
    module.setup("test")
    sources, targets = module.texts("test")
    assert len(sources) == len(module.datasets["test"]) == 1000
    assert len(module.texts("train")[0]) == 29000
    tokenizer = module.tokenizer
    ids = tokenizer.encode_target(targets[:200])
    assert [tokenizer.decode_target(i) for i in ids] == targets[:200]


def test_hub_loader_reads_a_dataset_directory(tmp_path):
    """The hub code path (datasets.load_dataset) on local files, as it would read a hub repo."""
    for split in ("train", "validation", "test"):
        lines = [json.dumps({"en": en, "de": de}) for de, en in PAIRS]
        (tmp_path / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    module = TranslationDataModule(
        "de",
        "en",
        cache_dir=str(tmp_path / "cache"),
        hub_id=str(tmp_path),
        hub_splits={"train": "train", "val": "validation", "test": "test"},
        tokenizer={"vocab_size": 300, "min_frequency": 1},
    )
    assert module.texts("val") == ([p[0] for p in PAIRS], [p[1] for p in PAIRS])
    module.setup("test")
    assert len(module.datasets["test"]) == 3


def test_collated_pairs_are_right_padded_with_bos_and_eos():
    examples = [
        {"source_ids": [5, 6, 7], "target_ids": [8], "source": "a", "target": "b", "index": 0},
        {"source_ids": [9], "target_ids": [10, 11], "source": "c", "target": "d", "index": 1},
    ]
    batch = collate_pairs(examples)
    assert batch["source"].tolist() == [[5, 6, 7, EOS_ID], [9, EOS_ID, PAD_ID, PAD_ID]]
    assert batch["source_mask"].tolist() == [[True] * 4, [True, True, False, False]]
    assert batch["target_in"].tolist() == [[BOS_ID, 8, PAD_ID], [BOS_ID, 10, 11]]
    assert batch["target_out"].tolist() == [[8, EOS_ID, PAD_ID], [10, 11, EOS_ID]]
    assert batch["target_out"].dtype == torch.long and batch["index"].tolist() == [0, 1]
