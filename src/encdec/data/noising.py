"""Pretraining objectives as noise on monolingual token ids: each turns a sentence's ids into a
(source, target) pair that a sequence-to-sequence model learns to map, so pretraining runs
through the same module, loss and search as translation.

- ``SpanInfilling`` (BART's text infilling, Lewis et al. 2020): spans of Poisson-distributed
  length (at least 1) replaced by one mask token each until ``mask_ratio`` of the tokens are
  masked; the target is the whole sentence. The mask token is ``<unk>``, which byte-level BPE
  never produces for real text.
- ``TokenMasking`` (BERT's masked language modelling, Devlin et al. 2019): ``mask_ratio`` of
  the tokens chosen; of those 80 % become the mask token, 10 % another token of the sentence,
  10 % stay; the target is the original token at the chosen positions and ``<pad>`` (no loss)
  elsewhere, aligned with the source (``networks.masked_lm``).
- ``PrefixSplit`` (the prefix LM objective, Raffel et al. 2020, Sec. 3.2.1): the sentence cut
  at a uniformly drawn point; the source is the beginning, the target the rest.

Each also says what a model's output is to be scored against (``reference``): the target,
except for the masked LM, whose output is the whole sentence with its blanks filled in.
"""

from typing import Protocol

import torch

from encdec.utils.special_tokens import PAD_ID, UNK_ID

MASK_ID = UNK_ID


class Noise(Protocol):
    def __call__(
        self, ids: list[int], generator: torch.Generator | None = None
    ) -> tuple[list[int], list[int]]: ...

    def reference(self, ids: list[int], target: list[int]) -> list[int]:
        """The ids a model's output for the pair made of ``ids`` is scored against."""
        ...


class SpanInfilling:
    def __init__(self, mask_ratio: float = 0.3, mean_span_length: float = 3.0) -> None:
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"data.noise.mask_ratio must be in (0, 1), got {mask_ratio}")
        if mean_span_length <= 0:
            raise ValueError(f"data.noise.mean_span_length must be > 0, got {mean_span_length}")
        self.mask_ratio, self.mean_span_length = mask_ratio, mean_span_length

    def __call__(
        self, ids: list[int], generator: torch.Generator | None = None
    ) -> tuple[list[int], list[int]]:
        """(ids with spans masked, ids): span lengths Poisson(``mean_span_length``), at least 1."""
        budget = round(self.mask_ratio * len(ids))
        masked = [False] * len(ids)
        rate = torch.tensor([self.mean_span_length])
        while (count := sum(masked)) < budget:
            length = min(max(1, int(torch.poisson(rate, generator=generator))), budget - count)
            start = int(torch.randint(len(ids) - length + 1, (1,), generator=generator))
            masked[start : start + length] = [True] * length
        source: list[int] = []
        for token, is_masked in zip(ids, masked, strict=True):
            if not is_masked:
                source.append(token)
            elif not source or source[-1] != MASK_ID:
                source.append(MASK_ID)  # one mask per span
        return source, list(ids)

    def reference(self, ids: list[int], target: list[int]) -> list[int]:
        return target


class TokenMasking:
    def __init__(self, mask_ratio: float = 0.15) -> None:
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"data.noise.mask_ratio must be in (0, 1), got {mask_ratio}")
        self.mask_ratio = mask_ratio

    def __call__(
        self, ids: list[int], generator: torch.Generator | None = None
    ) -> tuple[list[int], list[int]]:
        """(ids with the chosen positions corrupted, the original ids there and <pad> elsewhere);
        at least one position is chosen."""
        count = max(1, round(self.mask_ratio * len(ids)))
        chosen = torch.randperm(len(ids), generator=generator)[:count].tolist()
        actions = torch.rand(count, generator=generator).tolist()
        others = torch.randint(len(ids), (count,), generator=generator).tolist()
        source, target = list(ids), [PAD_ID] * len(ids)
        for position, action, other in zip(chosen, actions, others, strict=True):
            target[position] = ids[position]
            if action < 0.8:
                source[position] = MASK_ID
            elif action < 0.9:
                source[position] = ids[other]
        return source, target

    def reference(self, ids: list[int], target: list[int]) -> list[int]:
        return ids  # the filled-in sentence, not only the chosen positions


class PrefixSplit:
    def __call__(
        self, ids: list[int], generator: torch.Generator | None = None
    ) -> tuple[list[int], list[int]]:
        """(the first k ids, the rest), k uniform in 1..len-1 (a one-token sentence: itself as
        the source, no target tokens)."""
        if len(ids) < 2:
            return list(ids), []
        cut = 1 + int(torch.randint(len(ids) - 1, (1,), generator=generator))
        return list(ids[:cut]), list(ids[cut:])

    def reference(self, ids: list[int], target: list[int]) -> list[int]:
        return target
