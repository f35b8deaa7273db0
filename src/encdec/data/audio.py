"""Audio I/O for speech data: any file ``soundfile`` (libsndfile) reads — WAV, FLAC, OGG/Vorbis,
MP3 — as a mono float waveform at the model's sample rate. Channels are averaged; another
sample rate is converted by windowed-sinc resampling in plain torch (no torchaudio)."""

import io
import math
from pathlib import Path

import numpy as np
import soundfile
import torch
import torch.nn.functional as F


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


def resample(
    wave: torch.Tensor, from_rate: int, to_rate: int, zero_crossings: int = 6, rolloff: float = 0.99
) -> torch.Tensor:
    """``wave`` (..., N) from ``from_rate`` to ``to_rate`` Hz: band-limited interpolation with a
    Hann-windowed sinc of ``zero_crossings`` lobes a side, cut off at ``rolloff`` x the lower
    Nyquist frequency. After reducing the rates by their gcd to ``p -> q``, output sample ``j``
    of each block of ``q`` is one dot product with its own kernel over the input, so the whole
    conversion is one strided ``conv1d`` with ``q`` kernels."""
    if from_rate == to_rate:
        return wave
    divisor = math.gcd(from_rate, to_rate)
    p, q = from_rate // divisor, to_rate // divisor
    cutoff = min(p, q) * rolloff  # in units of the reduced input rate
    half_width = math.ceil(zero_crossings * p / cutoff)  # kernel half-width, input samples
    # time of input tap k relative to output j of a block, in input samples: (q, 2W + p)
    taps = torch.arange(-half_width, half_width + p, dtype=torch.float64) / p
    offsets = -torch.arange(q, dtype=torch.float64)[:, None] / q
    t = ((taps[None, :] + offsets) * cutoff).clamp(-zero_crossings, zero_crossings)
    window = torch.cos(t * math.pi / zero_crossings / 2) ** 2
    kernels = torch.special.sinc(t) * window * (cutoff / p)  # (q, 2W + p)
    shape, length = wave.shape[:-1], wave.size(-1)
    signal = F.pad(wave.reshape(-1, 1, length).double(), (half_width, half_width + p))
    blocks = F.conv1d(signal, kernels[:, None], stride=p)  # (B, q, blocks)
    out = blocks.transpose(1, 2).reshape(len(signal), -1)[:, : math.ceil(q * length / p)]
    return out.to(wave.dtype).reshape(*shape, -1)


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
