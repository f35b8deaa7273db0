"""Band-limited resampling in plain torch (no torchaudio): audio read at another rate
(``data.audio``) and speed perturbation in the acoustic front-end (``modules.audio_frontend``)."""

import math

import torch
import torch.nn.functional as F


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
