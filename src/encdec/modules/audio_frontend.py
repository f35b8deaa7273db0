"""The acoustic front-end, in plain torch: waveforms -> speed perturbation (training only) ->
log-mel features -> mean/variance normalization -> SpecAugment (training only) -> x4
convolutional subsampling -> vectors an encoder reads, with their mask. It sits where a text
source has its token embedding.

- ``SpeedPerturbation`` (Ko et al. 2015, Kaldi's and ESPnet's 0.9/1.0/1.1): each training
  utterance is played at a speed drawn from ``factors``, so tempo and pitch change together
  as with another speaker, drawn anew every time the utterance comes round.
- ``LogMelSpectrogram``: 25 ms frames every 10 ms (Kaldi's framing: whole frames only), a
  Hann window, |FFT|^2 on the next power of two points (zero-padded), an HTK
  mel filterbank (triangles, ``n_mels`` bins from ``f_min`` to ``f_max``), ``log(x + 1e-6)``.
- ``normalize_per_utterance``: each utterance's features to zero mean and unit variance per
  bin over its real frames.
- ``SpecAugment`` (Park et al. 2019): ``freq_masks`` bands of up to ``freq_width`` bins and
  ``time_masks`` spans of up to ``time_ratio`` of the utterance set to zero, drawn per
  utterance.
- ``ConvSubsampling``: two 3x3 convolutions with stride 2 (time and frequency / 4), then a
  linear map to ``output_size``. ``separable``: the second is depthwise (3x3, one filter per
  channel) then pointwise (1x1), as NeMo's Fast Conformer subsamples (Rekesh et al. 2023):
  9 + C instead of 9C multiply-adds per output value.
"""

import math
from collections.abc import Sequence

import torch
from torch import nn

from encdec.modules.resampling import resample


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)  # HTK


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(
    n_freqs: int, n_mels: int, sample_rate: int, f_min: float, f_max: float
) -> torch.Tensor:
    """(n_mels, n_freqs): triangular filters, equally spaced on the HTK mel scale, each
    peaking at 1 on its centre frequency."""
    bin_hz = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)  # (F,)
    edges = mel_to_hz(
        torch.linspace(
            hz_to_mel(torch.tensor(f_min)),
            hz_to_mel(torch.tensor(f_max)),
            n_mels + 2,
            dtype=torch.float64,
        )
    )  # fmt: skip  (M + 2,)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (M, 1)
    rising = (bin_hz - lower) / (centre - lower)
    falling = (upper - bin_hz) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


class LogMelSpectrogram(nn.Module):
    def __init__(
        self,
        sample_rate: int = 16000,
        n_mels: int = 80,
        window_ms: float = 25.0,
        hop_ms: float = 10.0,
        f_min: float = 0.0,
        f_max: float | None = None,
    ) -> None:
        super().__init__()
        self.window_length = round(sample_rate * window_ms / 1000)
        self.hop_length = round(sample_rate * hop_ms / 1000)
        self.n_fft = 2 ** math.ceil(math.log2(self.window_length))
        self.n_mels = n_mels
        window = torch.hann_window(self.window_length)  # periodic
        self.register_buffer("window", window, persistent=False)
        filterbank = mel_filterbank(
            self.n_fft // 2 + 1, n_mels, sample_rate, f_min, f_max or sample_rate / 2
        )
        self.register_buffer("filterbank", filterbank, persistent=False)

    def frames(self, samples: torch.Tensor) -> torch.Tensor:
        """The number of whole frames in ``samples`` samples (at least 1)."""
        return torch.clamp((samples - self.window_length) // self.hop_length + 1, min=1)

    def forward(
        self, waveforms: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # waveforms: (B, N), mask: (B, N) True = a real sample -> (B, T, M), (B, T)
        if waveforms.size(1) < self.window_length:
            waveforms = nn.functional.pad(waveforms, (0, self.window_length - waveforms.size(1)))
        frames = waveforms.float().unfold(1, self.window_length, self.hop_length)  # (B, T, W)
        spectrum = torch.fft.rfft(frames * self.window, n=self.n_fft)  # (B, T, F)
        mel = torch.matmul(spectrum.abs().square(), self.filterbank.T)  # (B, T, M)
        features = torch.log(mel + 1e-6)
        real_frames = self.frames(mask.sum(1))  # (B,)
        frame_mask = torch.arange(features.size(1), device=mask.device) < real_frames[:, None]
        return features, frame_mask


class SpeedPerturbation(nn.Module):
    def __init__(
        self, factors: Sequence[float] = (0.9, 1.0, 1.1), sample_rate: int = 16000
    ) -> None:
        super().__init__()
        if not factors or any(f <= 0 for f in factors):
            raise ValueError(f"speed perturbation factors must be positive, got {list(factors)}")
        self.factors, self.sample_rate = tuple(factors), sample_rate

    def forward(
        self, waveforms: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # waveforms: (B, N), mask: (B, N) True = a real sample -> (B, N'), (B, N'): each row
        # at its drawn speed f (its length / f), zero-padded to N' = N / (the slowest drawn f),
        # so a batch width N gives one of a few widths (the allocator reuses their memory)
        if not self.training or all(f == 1.0 for f in self.factors):
            return waveforms, mask
        drawn = torch.randint(len(self.factors), (waveforms.size(0),), device=waveforms.device)
        groups = []  # (rows, their waveforms at the drawn speed, the rate they were heard at)
        for choice, factor in enumerate(self.factors):
            rows = (drawn == choice).nonzero().squeeze(1)  # (b,)
            played_at = round(self.sample_rate * factor)  # the samples are heard at this rate
            if len(rows):
                changed = resample(waveforms[rows], played_at, self.sample_rate)  # (b, N / f)
                groups.append((rows, changed, played_at))
        out = waveforms.new_zeros(waveforms.size(0), max(g[1].size(1) for g in groups))
        lengths = torch.zeros_like(mask[:, 0], dtype=torch.long)  # (B,)
        for rows, changed, played_at in groups:
            out[rows, : changed.size(1)] = changed
            stretched = -(-mask[rows].sum(1) * self.sample_rate // played_at)  # ceil(n / f)
            lengths[rows] = stretched.clamp(max=changed.size(1))
        new_mask = torch.arange(out.size(1), device=mask.device) < lengths[:, None]
        return out * new_mask, new_mask  # the resampled padding's ringing is left out


def normalize_per_utterance(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each utterance's features (B, T, M) to zero mean, unit variance per bin over its real
    frames (mask (B, T)); padding frames become 0."""
    weights = mask.unsqueeze(-1).to(features.dtype)  # (B, T, 1)
    count = weights.sum(1, keepdim=True).clamp(min=1)  # (B, 1, 1)
    mean = (features * weights).sum(1, keepdim=True) / count
    variance = ((features - mean).square() * weights).sum(1, keepdim=True) / count
    return (features - mean) / torch.sqrt(variance + 1e-5) * weights


class SpecAugment(nn.Module):
    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 27,
        time_masks: int = 2,
        time_ratio: float = 0.05,
    ) -> None:
        super().__init__()
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_ratio = time_masks, time_ratio

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # features: (B, T, M), mask: (B, T) -> (B, T, M) with masked bands and spans zeroed
        if not self.training:
            return features
        batch, time, bins = features.shape
        keep = torch.ones_like(features, dtype=torch.bool)
        bin_index = torch.arange(bins, device=features.device)  # (M,)
        time_index = torch.arange(time, device=features.device)  # (T,)
        for _ in range(self.freq_masks):
            width = torch.randint(0, self.freq_width + 1, (batch, 1), device=features.device)
            start = (torch.rand(batch, 1, device=features.device) * (bins - width + 1)).long()
            band = (bin_index >= start) & (bin_index < start + width)  # (B, M)
            keep &= ~band[:, None, :]
        lengths = mask.sum(1, keepdim=True)  # (B, 1)
        for _ in range(self.time_masks):
            longest = (lengths.float() * self.time_ratio).long()  # (B, 1)
            width = (torch.rand(batch, 1, device=features.device) * (longest + 1)).long()
            start = (torch.rand(batch, 1, device=features.device) * (lengths - width + 1)).long()
            span = (time_index >= start) & (time_index < start + width)  # (B, T)
            keep &= ~span[:, :, None]
        return features * keep


class ConvSubsampling(nn.Module):
    def __init__(
        self, n_mels: int, output_size: int, channels: int = 256, separable: bool = False
    ) -> None:
        super().__init__()
        second = (
            [nn.Conv2d(channels, channels, 3, stride=2, groups=channels),
             nn.Conv2d(channels, channels, 1)]
            if separable
            else [nn.Conv2d(channels, channels, 3, stride=2)]
        )  # fmt: skip
        self.convolutions = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2), nn.ReLU(), *second, nn.ReLU()
        )
        self.projection = nn.Linear(channels * (((n_mels - 1) // 2 - 1) // 2), output_size)

    @staticmethod
    def lengths(frames: torch.Tensor) -> torch.Tensor:
        """Frames left after the two stride-2 convolutions (kernel 3, no padding)."""
        return torch.clamp(((frames - 1) // 2 - 1) // 2, min=1)

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # features: (B, T, M), mask: (B, T) -> (B, T', D), (B, T') with T' ~ T / 4
        if features.size(1) < 7:  # the shortest input the two convolutions take
            features = nn.functional.pad(features, (0, 0, 0, 7 - features.size(1)))
        hidden = self.convolutions(features.unsqueeze(1))  # (B, C, T', M')
        batch, channels, time, bins = hidden.shape
        vectors = self.projection(hidden.transpose(1, 2).reshape(batch, time, channels * bins))
        lengths = self.lengths(mask.sum(1))  # (B,)
        return vectors, torch.arange(time, device=mask.device) < lengths[:, None]


class AudioFrontend(nn.Module):
    """Waveforms (B, N) with their sample mask -> encoder inputs (B, T', output_size) with
    their frame mask."""

    def __init__(
        self,
        output_size: int = 256,
        sample_rate: int = 16000,
        n_mels: int = 80,
        spec_augment: SpecAugment | None = None,
        channels: int = 256,
        speed_factors: Sequence[float] = (1.0,),
        separable: bool = False,
    ) -> None:
        super().__init__()
        self.output_size, self.sample_rate = output_size, sample_rate
        self.speed_perturbation = SpeedPerturbation(speed_factors, sample_rate)
        self.log_mel = LogMelSpectrogram(sample_rate, n_mels)
        self.spec_augment = spec_augment or SpecAugment(0, 0, 0, 0.0)
        self.subsampling = ConvSubsampling(n_mels, output_size, channels, separable)

    def forward(
        self, waveforms: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        waveforms, mask = self.speed_perturbation(waveforms, mask)  # training only
        features, frame_mask = self.log_mel(waveforms, mask)  # (B, T, M), (B, T)
        features = normalize_per_utterance(features, frame_mask)
        features = self.spec_augment(features, frame_mask)
        return self.subsampling(features, frame_mask)  # (B, T', D), (B, T')
