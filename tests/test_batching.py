"""Tests for the token-budget batch sampler: budget, coverage, padding, DDP and resuming."""

import gzip
import random
from pathlib import Path

import pytest

from encdec.data.batching import TokenBucketBatchSampler

MULTI30K_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"
MAX_TOKENS = 2048


def random_lengths(count: int = 5000, seed: int = 0) -> list[int]:
    """Cost lengths of a synthetic corpus: 5..60 tokens plus ``<s>``/``</s>``."""
    rng = random.Random(seed)
    return [rng.randint(5, 60) + 2 for _ in range(count)]


def multi30k_lengths() -> list[int]:
    """Cost lengths of Multi30k train: longer side in whitespace tokens, plus 2."""
    if not MULTI30K_DIR.is_dir():
        pytest.skip(f"Multi30k not found at {MULTI30K_DIR}")
    with (
        gzip.open(MULTI30K_DIR / "train.de.gz", "rt", encoding="utf-8") as de,
        gzip.open(MULTI30K_DIR / "train.en.gz", "rt", encoding="utf-8") as en,
    ):
        return [max(len(s.split()), len(t.split())) + 2 for s, t in zip(de, en, strict=True)]


def padding_fraction(batches: list[list[int]], lengths: list[int]) -> float:
    """Share of padded batch cells (``len(batch) * max_length``) that are padding."""
    cells = sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)
    tokens = sum(lengths[i] for batch in batches for i in batch)
    return 1 - tokens / cells


def epoch_batches(sampler: TokenBucketBatchSampler, epoch: int = 0) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def flatten(batches: list[list[int]]) -> list[int]:
    return [index for batch in batches for index in batch]


@pytest.mark.parametrize("shuffle", [False, True])
def test_budget_is_respected(shuffle: bool) -> None:
    lengths = [*random_lengths(), 3000, 5000]  # two examples over budget
    batches = list(TokenBucketBatchSampler(lengths, MAX_TOKENS, shuffle))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) * longest <= MAX_TOKENS or len(batch) == 1
    assert [len(lengths) - 2] in batches and [len(lengths) - 1] in batches


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_index_once_per_epoch(shuffle: bool) -> None:
    lengths = random_lengths()
    sampler = TokenBucketBatchSampler(lengths, MAX_TOKENS, shuffle)
    for epoch in range(3):
        batches = epoch_batches(sampler, epoch)
        assert len(batches) == len(sampler)
        assert sorted(flatten(batches)) == list(range(len(lengths)))


@pytest.mark.parametrize("lengths_of", [random_lengths, multi30k_lengths])
def test_padding_is_small(lengths_of) -> None:
    lengths = lengths_of()
    batches = list(TokenBucketBatchSampler(lengths, MAX_TOKENS, shuffle=True, seed=1))
    assert padding_fraction(batches, lengths) < 0.1


def test_unshuffled_batches_are_sorted_and_fixed() -> None:
    lengths = random_lengths()
    sampler = TokenBucketBatchSampler(lengths, MAX_TOKENS, shuffle=False)
    first = epoch_batches(sampler, 0)
    assert epoch_batches(sampler, 1) == first
    served = [lengths[i] for i in flatten(first)]
    assert served == sorted(served)


def test_shuffle_is_seeded_per_epoch() -> None:
    lengths = random_lengths()

    def batches(seed: int, epoch: int) -> list[list[int]]:
        return epoch_batches(TokenBucketBatchSampler(lengths, MAX_TOKENS, True, seed=seed), epoch)

    assert batches(seed=0, epoch=0) == batches(seed=0, epoch=0)
    assert batches(seed=0, epoch=1) != batches(seed=0, epoch=0)
    assert batches(seed=1, epoch=0) != batches(seed=0, epoch=0)
    # Equal-length examples are mixed, not only the batch order.
    as_sets = {frozenset(batch) for batch in batches(seed=0, epoch=0)}
    assert {frozenset(batch) for batch in batches(seed=0, epoch=1)} != as_sets


def test_batches_are_computed_once_per_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = TokenBucketBatchSampler(random_lengths(), MAX_TOKENS, shuffle=True)
    compute = sampler._epoch_batches
    calls = []
    monkeypatch.setattr(sampler, "_epoch_batches", lambda: calls.append(1) or compute())
    for epoch in (0, 0, 1):
        sampler.set_epoch(epoch)
        assert len(sampler) == len(list(sampler)) == len(sampler)
    assert len(calls) == 2


def ddp_batches(
    lengths: list[int], max_tokens: int, pad_to_equal: bool, shuffle: bool = True, epoch: int = 0
) -> list[list[list[int]]]:
    """Each rank's batches of ``epoch`` with 2 replicas."""
    samplers = [
        TokenBucketBatchSampler(
            lengths, max_tokens, shuffle, num_replicas=2, rank=rank, pad_to_equal=pad_to_equal
        )
        for rank in range(2)
    ]
    ranks = [epoch_batches(sampler, epoch) for sampler in samplers]
    for sampler, batches in zip(samplers, ranks, strict=True):
        assert len(sampler) == len(batches)
    return ranks


def test_ddp_padded_shards_are_equal_and_cover_everything() -> None:
    lengths = random_lengths()
    for epoch in range(4):
        rank0, rank1 = ddp_batches(lengths, MAX_TOKENS, pad_to_equal=True, epoch=epoch)
        assert len(rank0) == len(rank1)
        assert set(flatten(rank0)) | set(flatten(rank1)) == set(range(len(lengths)))


def test_ddp_padding_repeats_batches_from_the_start() -> None:
    # Five batches of two: rank 1 gets batches 1 and 3 and a repeat of batch 0.
    lengths = [10] * 10
    rank0, rank1 = ddp_batches(lengths, max_tokens=20, pad_to_equal=True, shuffle=False)
    assert rank0 == [[0, 1], [4, 5], [8, 9]]
    assert rank1 == [[2, 3], [6, 7], [0, 1]]


def test_ddp_unpadded_shards_see_each_index_once() -> None:
    lengths = random_lengths()
    for epoch in range(4):
        rank0, rank1 = ddp_batches(lengths, MAX_TOKENS, pad_to_equal=False, epoch=epoch)
        assert abs(len(rank0) - len(rank1)) <= 1
        assert not {frozenset(b) for b in rank0} & {frozenset(b) for b in rank1}
        assert sorted(flatten(rank0) + flatten(rank1)) == list(range(len(lengths)))


def test_resume_yields_the_remaining_batches() -> None:
    lengths = random_lengths()
    sampler = TokenBucketBatchSampler(lengths, MAX_TOKENS, shuffle=True, seed=3)
    full = epoch_batches(sampler, epoch=2)
    iterator = iter(sampler)
    consumed = [next(iterator) for _ in range(7)]
    state = sampler.state_dict()
    assert state == {"epoch": 2, "batches_done": 7}

    resumed = TokenBucketBatchSampler(lengths, MAX_TOKENS, shuffle=True, seed=3)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # the training loop sets the epoch again when resuming
    assert len(resumed) == len(full)
    assert consumed + list(resumed) == full
    assert resumed.state_dict() == {"epoch": 2, "batches_done": len(full)}
    assert list(resumed) == full  # the skip applies to one iteration only


def test_resume_is_dropped_when_the_epoch_changes() -> None:
    lengths = random_lengths()
    sampler = TokenBucketBatchSampler(lengths, MAX_TOKENS, shuffle=True)
    sampler.load_state_dict({"epoch": 2, "batches_done": 7})
    sampler.set_epoch(3)
    assert sampler.state_dict() == {"epoch": 3, "batches_done": 0}
    assert len(list(sampler)) == len(sampler)


@pytest.mark.parametrize("arguments", [{"max_tokens": 0}, {"rank": 2}, {"rank": -1}])
def test_invalid_arguments_are_rejected(arguments: dict[str, int]) -> None:
    settings = {"max_tokens": MAX_TOKENS, "shuffle": False, "num_replicas": 2, "rank": 0}
    with pytest.raises(ValueError):
        TokenBucketBatchSampler(random_lengths(10), **(settings | arguments))
