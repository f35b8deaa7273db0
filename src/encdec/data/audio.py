"""Audio I/O for speech data: any file ``soundfile`` (libsndfile) reads — WAV, FLAC, OGG/Vorbis,
MP3 — as a mono float waveform at the model's sample rate. Channels are averaged; another
sample rate is converted by windowed-sinc resampling in plain torch (no torchaudio)."""

import io
from pathlib import Path

import numpy as np
import soundfile
import torch

from encdec.modules.resampling import resample


class AudioError(ValueError):
    """Audio that cannot be used: unreadable, empty, or not audio at all."""


def read_audio(source: str | Path | bytes, sample_rate: int) -> tuple[torch.Tensor, int, int]:
    """(waveform (N,) float32 at ``sample_rate``, the file's own rate, its channel count);
    ``source`` is a path or an encoded file's bytes. AudioError names what is wrong."""
    try:
        data, rate = soundfile.read(
            io.BytesIO(source) if isinstance(source, bytes) else source,
            dtype="float32",
            always_2d=True,
        )  # (N, C)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioError(f"unreadable audio: {error}") from None
    if data.shape[0] == 0:
        raise AudioError("empty audio (no samples)")
    channels = data.shape[1]
    wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1) if channels > 1 else data[:, 0]))
    if not torch.isfinite(wave).all():
        raise AudioError("audio with NaN or infinite samples")
    return resample(wave, rate, sample_rate), rate, channels


def audio_duration(source: str | Path | bytes) -> float:
    """Seconds of audio, from the file's header (the samples are not decoded)."""
    try:
        info = soundfile.info(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioError(f"unreadable audio: {error}") from None
    return info.frames / info.samplerate


def trim_silence(
    wave: torch.Tensor, sample_rate: int, below_peak_db: float = 40.0, margin_s: float = 0.05
) -> torch.Tensor:
    """``wave`` (N,) without its leading and trailing silence: the 25-ms windows (every 10 ms)
    whose RMS is more than ``below_peak_db`` under the loudest window's are silence, and
    ``margin_s`` seconds are kept beyond the first and last loud ones. Audio without a loud
    window (or shorter than one) comes back whole."""
    window, hop = round(0.025 * sample_rate), round(0.010 * sample_rate)
    if len(wave) < window:
        return wave
    rms = wave.unfold(0, window, hop).square().mean(1).sqrt()  # (T,)
    loud = (rms > rms.max() * 10 ** (-below_peak_db / 20)).nonzero().flatten()
    if not len(loud):
        return wave
    margin = round(margin_s * sample_rate)
    start = max(int(loud[0]) * hop - margin, 0)
    end = min(int(loud[-1]) * hop + window + margin, len(wave))
    return wave[start:end]
