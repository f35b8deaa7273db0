"""``SpeechDataModule``: utterances (audio + transcript) from a reader
(``encdec.data.speech_readers``: JSONL manifests, a Hugging Face audio dataset, the offline
synthesized corpus) as batches of waveforms and target tokens.

Targets are the normalized transcripts (``metrics.speech.normalize_transcript``: what WER and
CER score), tokenized by characters or BPE trained on the training split. Audio is decoded in
the DataLoader workers (``data.audio``): any channel count is averaged to mono and any sample
rate resampled to ``sample_rate`` (each said once in the log). Batches are duration-bucketed
under a budget of ``max_frames`` 10-ms frames (the padded length of the longest clip x the
clips), by the same seeded, DDP-sharded, resumable sampler as text batches; the padded length
is a multiple of ``pad_frames_to`` frames, so batches repeat a few shapes and the allocator
reuses their memory. Training leaves out clips longer than ``max_duration`` seconds and empty
transcripts (counted in the log); audio that fails to decode is skipped from its batch with a
warning: bad input never stops an epoch.
"""

import functools
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from encdec.data.audio import AudioError, read_audio
from encdec.data.batching import TokenBucketBatchSampler, bucketed_loader
from encdec.data.collate import pad
from encdec.data.speech_readers import SpeechReader, Utterance
from encdec.data.stages import TokenizedDataModule
from encdec.data.tokenization import BOS_ID, EOS_ID, Seq2SeqTokenizer
from encdec.metrics.speech import normalize_transcript
from encdec.utils.errors import UserError

log = logging.getLogger(__name__)
FRAMES_PER_SECOND = 100  # the front-end's 10-ms hop: the batch budget's unit


def frames(duration: float) -> int:
    return max(1, math.ceil(duration * FRAMES_PER_SECOND))


def round_up(length: int, multiple: int) -> int:
    return math.ceil(length / multiple) * multiple


class SpeechDataset(Dataset):
    """Utterances at ``positions``: the waveform at ``sample_rate``, the target ids and the
    transcript; None for audio that cannot be decoded."""

    def __init__(
        self,
        utterances: list[Utterance],
        target_ids: list[list[int]],
        positions: list[int],
        sample_rate: int,
    ) -> None:
        self.utterances, self.target_ids, self.positions = utterances, target_ids, positions
        self.sample_rate = sample_rate
        self._said: set[str] = set()  # conversions already logged by this process

    def __len__(self) -> int:
        return len(self.positions)

    def lengths(self) -> list[int]:
        """Each example's cost against the batch budget: its 10-ms frames."""
        return [frames(self.utterances[p].duration) for p in self.positions]

    def __getitem__(self, position: int) -> dict[str, Any] | None:
        index = self.positions[position]
        utterance = self.utterances[index]
        try:
            wave, rate, channels = read_audio(utterance.audio, self.sample_rate)
        except AudioError as error:
            log.warning("skipped %s: %s", utterance.name, error)
            return None
        self._say_conversion(rate, channels, utterance.name)
        return {
            "audio": wave,  # (N,)
            "target_ids": self.target_ids[index],
            "reference": utterance.text,
            "index": index,
        }

    def _say_conversion(self, rate: int, channels: int, name: str) -> None:
        for converted, message in (
            (rate != self.sample_rate, f"resampling {rate} Hz audio to {self.sample_rate} Hz"),
            (channels > 1, f"averaging {channels}-channel audio to mono"),
        ):
            if converted and message not in self._said:
                self._said.add(message)
                log.info("%s (first: %s)", message, name)


def collate_speech(
    examples: list[dict[str, Any] | None], multiple: int = 1
) -> dict[str, Any] | None:
    """``source``: waveforms (B, N) zero-padded to a multiple of ``multiple`` samples,
    ``source_mask`` (B, N) True on samples, ``target_in`` = BOS + tokens, ``target_out`` =
    tokens + EOS, ``references`` (transcripts); undecodable audio (None) is left out (None if
    nothing is left)."""
    kept = [e for e in examples if e is not None]
    if not kept:
        return None
    lengths = torch.tensor([len(e["audio"]) for e in kept])
    source = torch.zeros(len(kept), round_up(int(lengths.max()), multiple))
    for row, example in enumerate(kept):
        source[row, : len(example["audio"])] = example["audio"]
    return {
        "source": source,
        "source_mask": torch.arange(source.size(1))[None] < lengths[:, None],
        "target_in": pad([[BOS_ID, *e["target_ids"]] for e in kept]),
        "target_out": pad([[*e["target_ids"], EOS_ID] for e in kept]),
        "references": [e["reference"] for e in kept],
        "index": torch.tensor([e["index"] for e in kept], dtype=torch.long),
    }


class SpeechDataModule(TokenizedDataModule):
    """``source`` is a reader built from its own config; ``splits`` names the reader's split
    of each stage (e.g. ``{test: test_unseen_engine}``). Subclasses (speech synthesis) may
    tokenize the texts otherwise (``token_ids``) and batch them otherwise (``collate``)."""

    collate = staticmethod(collate_speech)  # examples -> a batch (``multiple``: padding)

    def __init__(
        self,
        cache_dir: str,
        source: SpeechReader,
        splits: dict[str, str] | None = None,
        sample_rate: int = 16000,
        tokenizer: dict[str, Any] | None = None,
        max_frames: int = 20000,
        max_duration: float = 20.0,
        pad_frames_to: int = 16,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.cache_dir = Path(cache_dir)
        self.source = source
        self.splits = {"train": "train", "val": "val", "test": "test"} | dict(splits or {})
        self.sample_rate = sample_rate
        self.tokenizer_settings = {"kind": "char", "vocab_size": 200, "min_frequency": 1}
        self.tokenizer_settings |= tokenizer or {}
        if pad_frames_to < 1:
            raise UserError(f"data.pad_frames_to={pad_frames_to} must be 1 or more (frames)")
        longest = round_up(frames(max_duration), pad_frames_to)
        if max_frames < longest:
            raise UserError(
                f"data.max_frames={max_frames} cannot hold one clip of data.max_duration="
                f"{max_duration} s ({longest} frames, padded)"
            )
        self.max_frames, self.max_duration = max_frames, max_duration
        self.pad_frames_to = pad_frames_to
        self.num_workers, self.seed = num_workers, seed
        self.tokenizer: Seq2SeqTokenizer | None = None
        self.datasets: dict[str, SpeechDataset] = {}
        self._utterances: dict[str, list[Utterance]] = {}

    def utterances(self, stage: str) -> list[Utterance]:
        if stage not in self._utterances:
            self._utterances[stage] = self.source.read(self.splits[stage], self.cache_dir)
            if not self._utterances[stage]:
                raise UserError(f"the {stage} split ('{self.splits[stage]}') has no utterances")
        return self._utterances[stage]

    def prepare_data(self) -> None:
        self.utterances("train")  # builds a synthesized corpus once, before any rank reads it
        super().prepare_data()

    # ---- tokenizer and datasets (TokenizedDataModule) ----
    def tokenizer_texts(self) -> tuple[None, list[str]]:
        """Target only: the training transcripts, normalized."""
        return None, [normalize_transcript(u.text) for u in self.utterances("train")]

    def token_ids(self, tokenizer: Seq2SeqTokenizer, utterances: list[Utterance]) -> list:
        """Each utterance's token ids: its transcript, normalized, as the target."""
        return tokenizer.encode_target([normalize_transcript(u.text) for u in utterances])

    def build_dataset(self, stage: str, tokenizer: Seq2SeqTokenizer) -> SpeechDataset:
        utterances = self.utterances(stage)
        target_ids = self.token_ids(tokenizer, utterances)
        positions = list(range(len(utterances)))
        if stage == "train":  # evaluation keeps everything
            positions = [
                i for i in positions
                if target_ids[i] and utterances[i].duration <= self.max_duration
            ]  # fmt: skip
            if len(positions) < len(utterances):
                log.warning(
                    "left out %d of %d training utterances longer than data.max_duration=%s s "
                    "or with an empty transcript",
                    len(utterances) - len(positions), len(utterances), self.max_duration,
                )  # fmt: skip
            if not positions:
                raise UserError("no training utterances left after leaving out over-long ones")
        return SpeechDataset(utterances, target_ids, positions, self.sample_rate)

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        dataset, multiple = self.datasets[stage], self.pad_frames_to
        padded = [round_up(length, multiple) for length in dataset.lengths()]
        sampler = TokenBucketBatchSampler(
            padded, self.max_frames, shuffle, pad_to_equal=shuffle, **self.sharding()
        )
        samples = multiple * self.sample_rate // FRAMES_PER_SECOND  # the same multiple, in samples
        collate = functools.partial(self.collate, multiple=samples)
        return bucketed_loader(
            dataset, sampler, collate, self.num_workers, self.seed, self.trainer, shuffle
        )
