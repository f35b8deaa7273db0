"""``MonolingualDataModule``: pretraining data. Every sentence of both sides of a parallel corpus
(and, for training, of ``monolingual_files``) becomes a (source, target) pair through ``noise``
(``encdec.data.noising``: BART's span infilling, BERT's token masking, the prefix LM split),
drawn anew for every batch in training and fixed per sentence in evaluation, so that val
scores compare.

The tokenizer is the one the parallel corpus trains for translation (the same files, settings
and cache key; the extra monolingual files are pretraining text only), so a fine-tuning run
(``init_from=`` the pretrained checkpoint) reads the same vocabulary.
"""

import itertools
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch

from encdec.data.collate import pad, source_batch
from encdec.data.noising import Noise
from encdec.data.token_cache import digest_files, digest_values
from encdec.data.tokenization import Seq2SeqTokenizer
from encdec.data.translation import (
    CHUNK_PAIRS,
    Pairs,
    TranslationDataModule,
    stream_lines,
)
from encdec.utils.errors import UserError
from encdec.utils.special_tokens import BOS_ID, EOS_ID


class MonolingualDataModule(TranslationDataModule):
    def __init__(
        self, noise: Noise, monolingual_files: list[str] | None = None, **settings: Any
    ) -> None:
        super().__init__(**settings)
        if not self.tokenizer_settings["joint"]:
            raise UserError(
                "monolingual pretraining reads both languages: data.tokenizer.joint=true"
            )
        self.noise = noise
        self.monolingual_files = [Path(f) for f in monolingual_files or []]
        for path in self.monolingual_files:
            if not path.is_file():
                raise UserError(f"data.monolingual_files: '{path}' is not a file")

    def tokenizer_corpus(self) -> tuple[Iterable[str] | None, Iterable[str], str | None]:
        """The parallel corpus's, under its key as translation has it: the same tokenizer."""
        sources, targets, key = super().tokenizer_corpus()
        if key is not None:  # local files: keyed by their digest, not this module's
            key = TranslationDataModule.corpus_digest(self, "train")
        return sources, targets, key

    def corpus_digest(self, stage: str) -> str:
        extra = self.monolingual_files if stage == "train" else []
        return digest_values(
            "monolingual", TranslationDataModule.corpus_digest(self, stage), digest_files(extra)
        )

    def pair_chunks(self, stage: str) -> Iterator[Pairs]:
        """Both sides of each parallel chunk as sentences, then the monolingual files'."""
        for sources, targets in super().pair_chunks(stage):
            sentences = [*sources, *targets]
            yield sentences, sentences
        for path in self.monolingual_files if stage == "train" else []:
            lines = stream_lines(path)
            while chunk := list(itertools.islice(lines, CHUNK_PAIRS)):
                yield chunk, chunk

    def collate(self, stage: str) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        fixed_seed = None if stage == "train" else self.seed
        return partial(collate_noised, noise=self.noise, tokenizer=self.load_tokenizer(),
                       fixed_seed=fixed_seed)  # fmt: skip


def collate_noised(
    examples: list[dict[str, Any]],
    noise: Noise,
    tokenizer: Seq2SeqTokenizer,
    fixed_seed: int | None,
) -> dict[str, Any]:
    """A batch of noised sentences: ``noise`` of each row's ids is its (source, target); with
    ``fixed_seed``, each row's noise is drawn from a generator seeded by it and the row's index
    (the same every time), else from torch's generator (new every batch; restored on resume).
    Evaluation batches get the texts: ``noise.reference`` detokenized as the reference."""
    sentences = [list(example["target_ids"]) for example in examples]
    pairs = []
    for example, ids in zip(examples, sentences, strict=True):
        generator = None
        if fixed_seed is not None:
            generator = torch.Generator().manual_seed(fixed_seed * 1_000_003 + example["index"])
        pairs.append(noise(ids, generator))
    src, src_mask = source_batch([source for source, _ in pairs])
    batch = {
        "source": src,
        "source_mask": src_mask,
        "target_in": pad([[BOS_ID, *target] for _, target in pairs]),
        "target_out": pad([[*target, EOS_ID] for _, target in pairs]),
        "index": torch.tensor([e["index"] for e in examples], dtype=torch.long),
    }
    if "target" in examples[0]:
        batch["source_text"] = [tokenizer.decode_source(source) for source, _ in pairs]
        batch["references"] = [
            tokenizer.decode_target(noise.reference(ids, target))
            for ids, (_, target) in zip(sentences, pairs, strict=True)
        ]
    return batch
