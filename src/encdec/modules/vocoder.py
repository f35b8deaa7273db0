"""Griffin-Lim (Griffin & Lim 1984; the fast variant of Perraudin et al. 2013): a waveform from a
log-mel spectrogram, in plain torch, with no trained weights and no download.

The mel spectrogram is the recognizer's (``audio_frontend.LogMelSpectrogram``: power, HTK mel,
``log(x + 1e-6)``): it is turned back into the non-negative linear-frequency power spectrum whose
mel projection is closest to it (non-negative least squares, as librosa's ``mel_to_stft``: Lee &
Seung's multiplicative updates from the filterbank's clipped pseudo-inverse; the clipped
pseudo-inverse alone leaves holes and ripples that a recognizer mishears), its square root raised to
``power`` (> 1 sharpens the harmonics, as Tacotron does), and a phase is found by alternating
projections between consistent STFTs and the given magnitude, starting from a seeded random phase
(the same spectrogram always gives the same waveform).
"""

import torch
from torch import nn

from encdec.modules.audio_frontend import LogMelSpectrogram


class GriffinLim(nn.Module):
    def __init__(
        self,
        log_mel: LogMelSpectrogram,
        iterations: int = 32,
        momentum: float = 0.99,
        power: float = 1.2,
        seed: int = 0,
        nnls_iterations: int = 200,  # 0: the clipped pseudo-inverse only
    ) -> None:
        super().__init__()
        self.n_fft, self.hop_length = log_mel.n_fft, log_mel.hop_length
        self.window_length = log_mel.window_length
        self.register_buffer("window", log_mel.window.clone(), persistent=False)
        inverse = torch.linalg.pinv(log_mel.filterbank.double()).float()  # (F, M)
        self.register_buffer("inverse_filterbank", inverse, persistent=False)
        self.register_buffer("filterbank", log_mel.filterbank.clone(), persistent=False)  # (M, F)
        gram = log_mel.filterbank.T @ log_mel.filterbank  # (F, F)
        self.register_buffer("filterbank_gram", gram, persistent=False)
        self.iterations, self.momentum, self.power, self.seed = iterations, momentum, power, seed
        self.nnls_iterations = nnls_iterations

    def magnitude(self, log_mel: torch.Tensor) -> torch.Tensor:
        # log_mel: (T, M) -> linear-frequency magnitude (F, T)
        mel_power = torch.clamp(torch.exp(log_mel.float()) - 1e-6, min=0.0)  # (T, M)
        power = mel_power @ self.inverse_filterbank.T  # (T, F), least squares but signed
        floor = 1e-10 if self.nnls_iterations else 0.0  # updates keep a zero: start above it
        power = torch.clamp(power, min=floor)
        numerator = mel_power @ self.filterbank  # (T, F)
        for _ in range(self.nnls_iterations):  # each lowers |power @ filterbank.T - mel_power|
            power = power * numerator / (power @ self.filterbank_gram + 1e-10)
        return power.T.sqrt() ** self.power

    def _stft(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.stft(
            wave,
            self.n_fft,
            self.hop_length,
            self.window_length,
            self.window,
            center=True,
            return_complex=True,
        )  # fmt: skip  (F, T)

    def _istft(self, spectrum: torch.Tensor, length: int) -> torch.Tensor:
        return torch.istft(
            spectrum, self.n_fft, self.hop_length, self.window_length, self.window,
            center=True, length=length,
        )  # fmt: skip

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        # log_mel: (T, M) -> waveform (N,), N = (T - 1) x hop (a centred STFT of N samples has
        # T frames), peak at most 1
        magnitude = self.magnitude(log_mel)  # (F, T)
        length = (magnitude.size(1) - 1) * self.hop_length
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        phase = torch.rand(magnitude.shape, generator=generator) * 2 * torch.pi
        angles = torch.polar(torch.ones_like(magnitude), phase.to(magnitude.device))
        previous = torch.zeros_like(angles)
        for _ in range(self.iterations):
            rebuilt = self._stft(self._istft(magnitude * angles, length))
            angles = rebuilt - previous * (self.momentum / (1 + self.momentum))
            angles = angles / (angles.abs() + 1e-16)
            previous = rebuilt
        wave = self._istft(magnitude * angles, length)
        return wave / max(float(wave.abs().max()), 1.0)
