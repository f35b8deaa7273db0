"""The token cache: built once, reused by reruns and other processes, rebuilt when the corpus
or the tokenizer changes, never read when torn; DDP ranks read disjoint batches from it."""

import multiprocessing
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from encdec.data import token_cache, translation
from encdec.data.cached_directory import COMPLETE
from encdec.data.translation import TranslationDataModule, pair_lengths
from tests.test_translation_data import PAIRS, _module, _write_parallel

MANY = [(f"{de} {i}", f"{en} {i}") for i in range(200) for de, en in PAIRS]


def corpus(directory: Path, pairs=MANY) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    _write_parallel(directory, "train", pairs)
    _write_parallel(directory, "val", PAIRS)
    _write_parallel(directory, "test", PAIRS)
    return directory


def caches(directory: Path) -> list[str]:
    return sorted(p.name for p in (directory / "cache").glob("tokens-*") if p.is_dir())


def fitted(directory: Path, **kwargs) -> TranslationDataModule:
    module = _module(directory, **kwargs)
    module.prepare_data()
    module.setup("fit")
    return module


def test_rerun_maps_the_cache_without_tokenizing_again(tmp_path, monkeypatch):
    first = fitted(corpus(tmp_path))
    built = caches(tmp_path)
    assert len(built) == 2  # train and val
    train = first.datasets["train"]
    assert len(train) == len(MANY) and train.cache_files  # memory-mapped Arrow files
    assert all(Path(f["filename"]).is_relative_to(tmp_path / "cache") for f in train.cache_files)

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("a rerun tokenized the corpus again")

    def no_reading(path):
        raise AssertionError(f"a rerun read {path} again")
        yield  # a generator, as stream_lines is: reading starts at the first line asked for

    monkeypatch.setattr(TranslationDataModule, "tokenize", no_tokenizing)
    monkeypatch.setattr(translation, "stream_lines", no_reading)
    again = fitted(tmp_path)
    assert caches(tmp_path) == built
    assert again.datasets["train"][:5] == train[:5]
    expected = [
        max(len(s), len(t)) + 2
        for s, t in zip(train["source_ids"], train["target_ids"], strict=True)
    ]
    assert pair_lengths(train).tolist() == expected


def test_cache_is_rebuilt_when_corpus_or_tokenizer_or_filter_changes(tmp_path):
    fitted(corpus(tmp_path))
    assert len(caches(tmp_path)) == 2
    fitted(tmp_path, max_length=8)  # another filter: another training cache
    assert len(caches(tmp_path)) == 3
    fitted(tmp_path, tokenizer={"vocab_size": 280, "min_frequency": 1})  # another tokenizer
    assert len(caches(tmp_path)) == 5
    corpus(tmp_path, MANY[:-1])  # another corpus: another tokenizer, too
    module = fitted(tmp_path)
    assert len(caches(tmp_path)) == 7 and len(module.datasets["train"]) == len(MANY) - 1


def _build(directory: str, delay: float) -> int:
    time.sleep(delay)
    module = fitted(Path(directory))
    return len(module.datasets["train"])


def test_a_cache_of_another_format_is_not_read(tmp_path, monkeypatch):
    fitted(corpus(tmp_path))
    monkeypatch.setattr(token_cache, "FORMAT", token_cache.FORMAT + 1)
    fitted(tmp_path)  # rebuilt beside the old ones, not read
    names = caches(tmp_path)
    assert len(names) == 4 and {name.split("-")[1] for name in names} == {
        f"v{token_cache.FORMAT - 1}",
        f"v{token_cache.FORMAT}",
    }


def test_two_processes_building_the_same_cache_make_one(tmp_path):
    corpus(tmp_path)
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        sizes = pool.starmap(_build, [(str(tmp_path), 0.0), (str(tmp_path), 0.0)])
    assert sizes == [len(MANY)] * 2
    assert len(caches(tmp_path)) == 2
    assert not list((tmp_path / "cache").glob(".tokens-*"))  # no temporary left


def test_a_torn_cache_is_rebuilt_never_read(tmp_path):
    module = fitted(corpus(tmp_path))
    train_cache = Path(module.datasets["train"].cache_files[0]["filename"]).parent
    (train_cache / COMPLETE).unlink()  # as if killed before the marker was written
    for arrow in train_cache.glob("*.arrow"):
        arrow.write_bytes(b"torn")
    (tmp_path / "cache" / f".{train_cache.name}.99999").mkdir()  # a killed build's leftovers
    again = fitted(tmp_path)
    assert len(again.datasets["train"]) == len(MANY)
    assert (train_cache / COMPLETE).is_file()
    assert not list((tmp_path / "cache").glob(".tokens-*"))


def _kill_while_building(directory: str) -> None:
    def killed(self, *args, **kwargs):  # the rows are written, the file not finished
        os.kill(os.getpid(), signal.SIGKILL)

    from datasets.arrow_writer import ArrowWriter

    ArrowWriter.finalize = killed
    fitted(Path(directory))


def test_a_build_killed_midway_leaves_nothing_to_read(tmp_path):
    corpus(tmp_path)
    process = multiprocessing.get_context("spawn").Process(
        target=_kill_while_building, args=(str(tmp_path),)
    )
    process.start()
    process.join(120)
    assert process.exitcode == -signal.SIGKILL
    assert caches(tmp_path) == []
    assert len(fitted(tmp_path).datasets["train"]) == len(MANY)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_read_disjoint_batches_from_the_shared_cache(tmp_path, world_size):
    fitted(corpus(tmp_path))
    lengths = pair_lengths(fitted(tmp_path).datasets["train"])  # as each rank maps it
    ranks = [
        translation.TokenBucketBatchSampler(
            lengths, 64, shuffle=True, num_replicas=world_size, rank=rank, pad_to_equal=False
        )
        for rank in range(world_size)
    ]
    seen = np.concatenate([np.array([i for batch in rank for i in batch]) for rank in ranks])
    assert sorted(seen.tolist()) == list(range(len(MANY)))  # each pair once, on one rank
    padded = [
        len(translation.TokenBucketBatchSampler(lengths, 64, True, num_replicas=world_size, rank=r))
        for r in range(world_size)
    ]
    assert len(set(padded)) == 1  # training: every rank takes as many steps


def test_chunks_written_one_after_another_make_the_same_table(tmp_path, monkeypatch):
    whole = fitted(corpus(tmp_path / "whole"))
    monkeypatch.setattr(translation, "CHUNK_PAIRS", 7)  # 172 chunks
    chunked = fitted(corpus(tmp_path / "chunked"))
    for stage in ("train", "val"):
        assert chunked.datasets[stage].to_dict() == whole.datasets[stage].to_dict()
    assert chunked.datasets["train"]["index"] == list(range(len(MANY)))
    assert "source" in chunked.datasets["val"].column_names  # references kept for evaluation
    assert "source" not in chunked.datasets["train"].column_names
