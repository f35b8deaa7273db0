"""Length-bucketed batches under a token budget, sharded across DDP ranks and resumable.

Examples are sorted by length and cut greedily into batches whose padded size
``batch_size * max_length`` stays within ``max_tokens``, so batches hold many short or
few long examples and little padding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from encdec.utils.lightning_compat import load_pending_loader_position


class TokenBucketBatchSampler(Sampler[list[int]]):
    """Batches of example indices whose padded size is at most ``max_tokens``.

    ``lengths[i]`` is the padded cost length of example ``i`` (e.g. the longer of its
    source and target plus ``<s>``/``</s>``). A batch of ``n`` examples of maximum length
    ``L`` costs ``n * L``; an example longer than ``max_tokens`` forms a batch alone.

    With ``shuffle``, each epoch sorts a seeded random permutation stably by length (so
    equal-length examples mix differently per epoch) and shuffles the batch order;
    without it, batches come in increasing length, the same every epoch.

    Rank ``r`` of ``num_replicas`` takes every ``num_replicas``-th batch from ``r``. With
    ``pad_to_equal`` (training) the batch list is first extended by repeating batches
    from its start so every rank gets as many; without it (evaluation) every example is
    seen exactly once overall and ranks may differ by one batch.

    Resuming: :meth:`state_dict` records the epoch and the number of batches yielded in
    it; after :meth:`load_state_dict` the next iteration skips those batches. The count
    is of batches handed to the ``DataLoader``, which with worker prefetching runs ahead
    of the batches actually trained on; pass the trained count to
    :meth:`load_state_dict` for an exact resume.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_tokens: int,
        shuffle: bool,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        pad_to_equal: bool = True,
    ) -> None:
        if max_tokens <= 0:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} out of range for {num_replicas} replicas")
        self.lengths = np.asarray(lengths, dtype=np.int64)  # (num_examples,)
        self.max_tokens = max_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.pad_to_equal = pad_to_equal
        self.epoch = 0
        self._batches_done = 0  # yielded in the current epoch
        self._resume_at = 0  # batches the next iteration skips
        self._cache: tuple[int, list[np.ndarray]] | None = None  # (epoch, this rank's batches)
        # Lightning calls ``set_epoch`` on ``loader.sampler`` and ``loader.batch_sampler.sampler``
        # at each epoch start, never on the batch sampler itself: so it is its own ``sampler``.
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        if epoch != self.epoch:
            self.epoch = epoch
            self._batches_done = 0
            self._resume_at = 0

    def __len__(self) -> int:
        """Number of batches of this rank in a whole epoch."""
        return len(self._rank_batches())

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._rank_batches()
        start, self._resume_at = self._resume_at, 0
        self._batches_done = start
        for batch in batches[start:]:
            self._batches_done += 1
            yield batch.tolist()

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_done": self._batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = state["epoch"]
        self._batches_done = self._resume_at = state["batches_done"]

    def _rank_batches(self) -> list[np.ndarray]:
        """This rank's batches of the current epoch, computed once per epoch."""
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._shard(self._epoch_batches()))
        return self._cache[1]

    def _epoch_batches(self) -> list[np.ndarray]:
        """All batches of the current epoch, in the order they are served: views of one
        array of example indices (no Python list of the corpus)."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        num_examples = len(self.lengths)
        if self.shuffle:
            order = torch.randperm(num_examples, generator=generator).numpy()
        else:
            order = np.arange(num_examples)
        order = order[np.argsort(self.lengths[order], kind="stable")]
        batches = np.split(order, batch_starts(self.lengths[order], self.max_tokens)[1:])
        if self.shuffle:
            permutation = torch.randperm(len(batches), generator=generator).tolist()
            batches = [batches[i] for i in permutation]
        return batches

    def _shard(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        """This rank's share of ``batches``, padded first when ``pad_to_equal``."""
        if self.pad_to_equal:
            per_rank = -(-len(batches) // self.num_replicas)  # ceil division
            total = per_rank * self.num_replicas
            batches = [batches[i % len(batches)] for i in range(total)]
        return batches[self.rank :: self.num_replicas]


def batch_starts(sorted_lengths: np.ndarray, max_tokens: int) -> list[int]:
    """Where each batch starts when examples of these (increasing) lengths are cut greedily:
    a batch grows while its size times its newest, longest example stays within
    ``max_tokens``; an example over the budget is a batch alone. One binary search per batch."""
    starts, start, count = [], 0, len(sorted_lengths)
    while start < count:
        starts.append(start)
        # the largest end with (end - start) * sorted_lengths[end - 1] <= max_tokens, >= start + 1
        low, high = start + 1, min(count, start + max(1, max_tokens // int(sorted_lengths[start])))
        while low < high:
            middle = (low + high + 1) // 2
            if (middle - start) * int(sorted_lengths[middle - 1]) <= max_tokens:
                low = middle
            else:
                high = middle - 1
        start = low
    return starts


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`TokenBucketBatchSampler` whose position goes into Lightning
    checkpoints (Lightning saves and restores loaders that have ``state_dict``/``load_state_dict``),
    so a run resumed mid-epoch continues with the next batch it had not trained on.

    The sampler runs ahead of training by the batches prefetched, so the position saved is
    ``trained_batches()``: the batches of this epoch the training loop has finished.
    """

    trained_batches: Callable[[], int] | None = None  # set by the datamodule

    def state_dict(self) -> dict[str, int]:
        state = self.batch_sampler.state_dict()
        if self.trained_batches is not None:
            state["batches_done"] = self.trained_batches()
        return state

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch_sampler.load_state_dict(state)


def bucketed_loader(
    dataset: Any,
    sampler: TokenBucketBatchSampler,
    collate_fn: Callable[[list[Any]], Any],
    num_workers: int,
    seed: int,
    trainer: L.Trainer | None,
    training: bool,
) -> DataLoader:
    """The DataLoader of a datamodule stage: resumable when ``training`` (checkpoints record the
    batches the loop trained on), with its own generator, so creating each epoch's iterator
    draws its worker seed from it and not from the global RNG that dropout uses (a resumed run
    then draws the same dropout masks)."""
    loader = (ResumableDataLoader if training else DataLoader)(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_fn,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
    if trainer is not None and training:
        loop = trainer.fit_loop.epoch_loop
        loader.trained_batches = lambda: loop.batch_progress.current.processed
    return loader


def restore_loader_position(trainer: L.Trainer) -> None:
    """Put a run resumed mid-epoch back at the batch it stopped at; call from ``on_train_start``.

    Lightning loads the training loader's saved position only when it sets up the training
    data after restoring the checkpoint. ``configure_optimizers`` sets it up earlier (through
    ``trainer.estimated_stepping_batches``), so the position would be dropped and the epoch
    would start again from its first batch. Load it here, and restart the loader's iterator,
    which has already prefetched a batch from the wrong position."""
    load_pending_loader_position(trainer)
