"""``SynthesisDataModule``: text -> speech pairs for speech synthesis, from the same readers and
batches as speech recognition (``SpeechDataModule``: a single-voice synthesized corpus, JSONL
manifests, Hugging Face audio datasets; audio decoded in the workers, batches under a budget of
``max_frames`` 10-ms frames, over-long training clips left out and counted, undecodable audio
skipped from its batch).

What differs: the text is the source, read through a text frontend (``text_frontends``: its
normalized characters, or espeak-ng's phonemes for it) one symbol at a time by a joint
tokenizer trained on the training texts; the waveform is the target (the network
computes its log-mel frames itself, with the recognizer's front-end), its leading and trailing
silence trimmed.
"""

from typing import Any

import torch

from encdec.data.audio import trim_silence
from encdec.data.collate import source_batch
from encdec.data.speech import SpeechDataModule, round_up
from encdec.data.speech_readers import Utterance
from encdec.data.text_frontends import Characters, TextFrontend
from encdec.data.tokenization import Seq2SeqTokenizer
from encdec.utils.errors import UserError


def collate_synthesis(
    examples: list[dict[str, Any] | None], multiple: int = 1
) -> dict[str, Any] | None:
    """``source``: character ids + EOS (B, S) with ``source_mask``; ``audio``: waveforms (B, N)
    zero-padded to a multiple of ``multiple`` samples, with ``audio_mask``; ``references``: the
    texts; ``index``. Undecodable audio (None) is left out (None if nothing is left)."""
    kept = [e for e in examples if e is not None]
    if not kept:
        return None
    lengths = torch.tensor([len(e["audio"]) for e in kept])
    audio = torch.zeros(len(kept), round_up(int(lengths.max()), multiple))
    for row, example in enumerate(kept):
        audio[row, : len(example["audio"])] = example["audio"]
    source, source_mask = source_batch([e["target_ids"] for e in kept])  # the text's ids
    return {
        "source": source,
        "source_mask": source_mask,
        "audio": audio,
        "audio_mask": torch.arange(audio.size(1))[None] < lengths[:, None],
        "references": [e["reference"] for e in kept],
        "index": torch.tensor([e["index"] for e in kept], dtype=torch.long),
    }


class SynthesisDataModule(SpeechDataModule):
    """As ``SpeechDataModule``, with the text as the source (``SpeechDataset``'s token ids are
    the text's) and the audio as the target, its leading and trailing silence trimmed
    (``trim_silence_db``: windows that far under the loudest are silence; null: keep it): what
    the model learns to say, and what synthesis is scored against."""

    def __init__(
        self,
        text_frontend: TextFrontend | None = None,  # None: characters
        trim_silence_db: float | None = 40.0,
        **settings: Any,
    ) -> None:
        super().__init__(**settings)  # SpeechDataModule's settings
        self.tokenizer_settings["joint"] = True  # one symbol vocabulary, read as the source
        self.text_frontend = text_frontend or Characters()
        self.trim_silence_db = trim_silence_db

    def trimmed(self, wave: torch.Tensor) -> torch.Tensor:
        if self.trim_silence_db is None:
            return wave
        return trim_silence(wave, self.sample_rate, self.trim_silence_db)

    def collate(
        self, examples: list[dict[str, Any] | None], multiple: int = 1
    ) -> dict[str, Any] | None:
        trimmed = [e if e is None else {**e, "audio": self.trimmed(e["audio"])} for e in examples]
        return collate_synthesis(trimmed, multiple)

    def tokenizer_texts(self) -> tuple[list[str], list[str]]:
        """The training texts through the text frontend: one joint vocabulary of its symbols."""
        texts = self.text_frontend([u.text for u in self.utterances("train")])
        return texts, texts

    def token_ids(self, tokenizer: Seq2SeqTokenizer, utterances: list[Utterance]) -> list:
        """Each utterance's text, through the text frontend, as source ids."""
        return tokenizer.encode_source(self.text_frontend([u.text for u in utterances]))

    def mel_statistics_clips(self, count: int = 200) -> list[torch.Tensor]:
        """The waveforms of the first ``count`` training utterances that decode: what the
        network's per-bin mel normalization is computed from."""
        dataset = self.datasets.get("train") or self.build_dataset("train", self.load_tokenizer())
        clips = []
        for position in range(min(count, len(dataset))):
            example = dataset[position]
            if example is not None:
                clips.append(self.trimmed(example["audio"]))
        if not clips:
            raise UserError("no training audio decodes: cannot normalize the spectrograms")
        return clips
