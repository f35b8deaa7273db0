"""Where speech data comes from: one reader per format, each its own config
(``conf/data/source/``), each giving a split's utterances.

- ``ManifestReader``: JSONL manifests, one utterance a line, ``{"audio_filepath", "text",
  "duration", "speaker"}`` (NeMo's convention; ``duration`` and ``speaker`` optional), audio
  paths relative to the manifest; ``<path>/<split>.jsonl``.
- ``HFAudioReader``: a Hugging Face dataset with an ``Audio`` column and a text column, by hub
  id or a local directory (``save_to_disk``'s); the audio's bytes are decoded by ``soundfile``
  like files are.
- ``SynthesizedSpeechReader``: the offline corpus (``encdec.data.speech_corpus``), synthesized
  on first use into the cache directory from a text source (the command grammar, or the English
  side of Multi30k), then read through its manifests.
- ``SingleVoiceReader``: the same builder with one voice saying every split's sentences (the
  data of speech synthesis).

A manifest line that is not JSON, or has no text or audio path, is an error naming the file and
line; an utterance whose audio file is missing is skipped, and the skips are counted in the log.
"""

import gzip
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from encdec.data.audio import AudioError, audio_duration
from encdec.data.speech_corpus import Speaker, build_speech_corpus, speaker_table
from encdec.utils.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Utterance:
    audio: str | bytes  # an audio file's path, or an encoded file's bytes
    text: str  # the transcript as the corpus writes it
    duration: float  # seconds
    name: str  # what messages call it: the file, or dataset:row
    speaker: str | None = None


class SpeechReader(Protocol):
    def read(self, split: str, cache_dir: Path) -> list[Utterance]: ...


class ManifestReader:
    """``path``: the directory of ``<split>.jsonl`` manifests."""

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path else None

    def read(self, split: str, cache_dir: Path) -> list[Utterance]:
        if self.path is None:
            raise UserError("data.source.path: give the directory of the <split>.jsonl manifests")
        return read_manifest(self.path / f"{split}.jsonl")


def read_manifest(manifest: Path) -> list[Utterance]:
    """The utterances of one JSONL manifest (audio paths relative to it); utterances whose
    audio file is missing are left out and counted."""
    if not manifest.is_file():
        raise UserError(f"no manifest '{manifest}'")
    utterances, missing = [], []
    with open(manifest, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{manifest}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(f"{where}: not a JSON line ({error.msg})") from None
            for key in ("audio_filepath", "text"):
                if not isinstance(row, dict) or not isinstance(row.get(key), str):
                    raise UserError(f"{where}: no '{key}' string")
            audio = manifest.parent / row["audio_filepath"]  # absolute paths stay absolute
            if not audio.is_file():
                missing.append(str(audio))
                continue
            duration = row.get("duration")
            if not isinstance(duration, int | float):
                duration = header_duration(audio, where)
            utterances.append(
                Utterance(str(audio), row["text"], float(duration), str(audio), row.get("speaker"))
            )
    if missing:
        log.warning(
            "skipped %d of %d utterances of %s: audio file missing (first: %s)",
            len(missing), len(missing) + len(utterances), manifest, missing[0],
        )  # fmt: skip
    return utterances


def header_duration(audio: str | Path | bytes, where: str) -> float:
    try:
        return audio_duration(audio)
    except AudioError as error:
        raise UserError(f"{where}: {error}") from None


class HFAudioReader:
    """``dataset``: a hub id or a local directory; ``splits`` maps the data module's split
    names to the dataset's (e.g. ``{val: validation}``)."""

    def __init__(
        self,
        dataset: str,
        audio_column: str = "audio",
        text_column: str = "text",
        speaker_column: str | None = None,
        splits: dict[str, str] | None = None,
    ) -> None:
        self.dataset, self.audio_column, self.text_column = dataset, audio_column, text_column
        self.speaker_column = speaker_column
        self.splits = dict(splits or {})

    @cached_property
    def _dataset_dict(self) -> Any:
        import datasets

        local = Path(self.dataset)
        try:
            if local.is_dir():
                if (local / "dataset_dict.json").is_file() or (local / "state.json").is_file():
                    return datasets.load_from_disk(str(local))
                return datasets.load_dataset(str(local))
            return datasets.load_dataset(self.dataset)
        except (FileNotFoundError, ValueError, ConnectionError, OSError) as error:
            raise UserError(f"data.source.dataset='{self.dataset}': {error}") from None

    def read(self, split: str, cache_dir: Path) -> list[Utterance]:
        import datasets

        name = self.splits.get(split, split)
        dataset_dict = self._dataset_dict
        if name not in dataset_dict:
            raise UserError(
                f"'{self.dataset}' has no split '{name}' (it has {sorted(dataset_dict)}): "
                f"map it with data.source.splits.{split}=..."
            )
        table = dataset_dict[name]
        for column in (self.audio_column, self.text_column, self.speaker_column):
            if column is not None and column not in table.column_names:
                raise UserError(
                    f"'{self.dataset}' [{name}] has no column '{column}' "
                    f"(it has {table.column_names})"
                )
        # the encoded bytes, decoded by soundfile like a file (no torchcodec)
        table = table.cast_column(self.audio_column, datasets.Audio(decode=False))
        utterances = []
        for row_number, row in enumerate(table):
            audio = row[self.audio_column]
            where = f"{self.dataset} [{name}] row {row_number}"
            source = audio.get("bytes") or audio.get("path")
            if not source:
                raise UserError(f"{where}: no audio")
            text = row[self.text_column]
            if not isinstance(text, str):
                raise UserError(f"{where}: no '{self.text_column}' string")
            speaker = row[self.speaker_column] if self.speaker_column else None
            duration = header_duration(source, where)
            utterances.append(
                Utterance(source, text, duration, where, None if speaker is None else str(speaker))
            )
        return utterances


class SynthesizedSpeechReader:
    """The offline corpus: ``texts`` gives each split's sentences (a partial: the command
    grammar, or Multi30k's English side); speakers are drawn per split from ``seed``
    (``speakers``: how many per split, ``test_unseen_engine`` those of the held-out engine);
    each says ``utterances_per_speaker`` sentences (one count, or a count per split)."""

    def __init__(
        self,
        texts: Callable[[], dict[str, list[str]]],
        speakers: dict[str, int],
        utterances_per_speaker: int | dict[str, int],
        held_out_engine: str = "flite",
        sample_rate: int = 16000,
        seed: int = 0,
    ) -> None:
        if not isinstance(utterances_per_speaker, int):
            utterances_per_speaker = dict(utterances_per_speaker)
            if missing := [split for split in speakers if split not in utterances_per_speaker]:
                raise UserError(
                    f"data.source.utterances_per_speaker gives no count for {missing} "
                    f"(it has {sorted(utterances_per_speaker)})"
                )
        self.texts, self.speakers = texts, dict(speakers)
        self.utterances_per_speaker, self.held_out_engine = utterances_per_speaker, held_out_engine
        self.sample_rate, self.seed = sample_rate, seed
        self._corpus: Path | None = None

    def corpus(self, cache_dir: Path) -> Path:
        if self._corpus is None:
            speakers = speaker_table(self.speakers, self.held_out_engine, self.seed)
            self._corpus = build_speech_corpus(
                cache_dir, self.texts(), speakers, self.utterances_per_speaker,
                self.sample_rate, self.seed,
            )  # fmt: skip
        return self._corpus

    def read(self, split: str, cache_dir: Path) -> list[Utterance]:
        if split not in self.speakers:
            raise UserError(
                f"the synthesized corpus has no split '{split}' ({list(self.speakers)})"
            )
        return read_manifest(self.corpus(cache_dir) / f"{split}.jsonl")


class SingleVoiceReader:
    """One voice (``voice``: the settings of a ``speech_corpus.Speaker`` but its name) saying
    ``utterances[split]`` sentences of each split's ``texts``; each split is synthesized by
    ``shards`` speakers of that same voice, in parallel processes."""

    def __init__(
        self,
        texts: Callable[[], dict[str, list[str]]],
        voice: dict[str, Any],
        utterances: dict[str, int],
        shards: int = 2,
        sample_rate: int = 16000,
        seed: int = 0,
    ) -> None:
        try:
            Speaker(name="voice", **voice)
        except TypeError as error:
            raise UserError(f"data.source.voice: {error}") from None
        if shards < 1:
            raise UserError(f"data.source.shards={shards} must be 1 or more")
        self.texts, self.voice, self.utterances = texts, dict(voice), dict(utterances)
        self.shards, self.sample_rate, self.seed = shards, sample_rate, seed
        self._corpus: Path | None = None

    def corpus(self, cache_dir: Path) -> Path:
        if self._corpus is None:
            texts = self.texts()
            speakers, counts = {}, {}
            for split, count in self.utterances.items():
                shards = min(self.shards, max(count, 1))
                speakers[split] = [
                    Speaker(name=f"{split}-{i}", **self.voice) for i in range(shards)
                ]
                counts[split] = -(-count // shards)  # each shard says its share
            self._corpus = build_speech_corpus(
                cache_dir, texts, speakers, counts, self.sample_rate, self.seed,
                distinct_sentences=True,
            )  # fmt: skip
        return self._corpus

    def read(self, split: str, cache_dir: Path) -> list[Utterance]:
        if split not in self.utterances:
            raise UserError(
                f"the single-voice corpus has no split '{split}' ({list(self.utterances)})"
            )
        return read_manifest(self.corpus(cache_dir) / f"{split}.jsonl")


def parallel_text_side(
    path: str, language: str, splits: dict[str, str], max_sentences: int | None = None
) -> dict[str, list[str]]:
    """One language of a corpus of parallel files (``<path>/<file split>.<language>[.gz]``) as
    sentences per split, distinct within a split: the Multi30k-English text of the speech
    corpus. ``max_sentences``: the first that many of each split."""
    texts = {}
    for split, file_split in splits.items():
        candidates = [Path(path) / f"{file_split}.{language}{ext}" for ext in (".gz", "")]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise UserError(f"no '{candidates[0]}' (or without .gz): data.source.texts.path")
        opener = gzip.open if found.suffix == ".gz" else open
        with opener(found, "rt", encoding="utf-8") as lines:
            sentences = list(dict.fromkeys(s for line in lines if (s := line.strip())))
        texts[split] = sentences[:max_sentences] if max_sentences else sentences
    return texts
