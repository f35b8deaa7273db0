"""The acoustic front-end: log-mel equal to a numpy computation, filters where the mel scale
puts them, padding that leaks nothing, SpecAugment only in training and within its limits, speed
perturbation that plays a tone faster or slower and changes nothing at evaluation."""

import numpy as np
import pytest
import torch

from encdec.modules.audio_frontend import (
    AudioFrontend,
    ConvSubsampling,
    LogMelSpectrogram,
    SpecAugment,
    SpeedPerturbation,
    hz_to_mel,
    mel_filterbank,
    normalize_per_utterance,
)


def test_log_mel_equals_numpy_framing_window_and_fft():
    log_mel = LogMelSpectrogram(sample_rate=16000, n_mels=40)
    waveform = torch.randn(1, 8000, generator=torch.Generator().manual_seed(0))
    features, mask = log_mel(waveform, torch.ones_like(waveform, dtype=torch.bool))
    signal = waveform[0].double().numpy()
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic Hann
    frames = np.stack([signal[i : i + 400] * window for i in range(0, 8000 - 400 + 1, 160)])
    power = np.abs(np.fft.rfft(frames, n=512)) ** 2  # (T, 257)
    expected = np.log(power @ log_mel.filterbank.double().numpy().T + 1e-6)
    assert features.shape == (1, 48, 40) and mask.all()  # 1 + (8000 - 400) // 160 frames
    np.testing.assert_allclose(features[0].numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("frequency", [300.0, 1000.0, 3000.0, 6000.0])
def test_a_pure_tone_lands_in_the_mel_bin_centred_nearest_it(frequency):
    log_mel = LogMelSpectrogram(sample_rate=16000, n_mels=80)
    time = torch.arange(16000) / 16000
    tone = torch.sin(2 * torch.pi * frequency * time)[None]
    features, _ = log_mel(tone, torch.ones_like(tone, dtype=torch.bool))
    edges = torch.linspace(0, float(hz_to_mel(torch.tensor(8000.0))), 82)
    nearest = int(torch.argmin((edges[1:-1] - hz_to_mel(torch.tensor(frequency))).abs()))
    assert abs(int(features[0].mean(0).argmax()) - nearest) <= 1


def test_filters_are_triangles_on_the_mel_scale_and_none_is_empty():
    filterbank = mel_filterbank(257, 80, 16000, 0.0, 8000.0)
    assert filterbank.shape == (80, 257)
    peaks = filterbank.max(1).values
    assert (peaks > 0.3).all() and (peaks <= 1).all()  # the lowest are narrower than a bin
    assert (filterbank[-20:].max(1).values > 0.9).all()  # wide filters reach their peak
    centres = filterbank.argmax(1)
    assert (centres[1:] >= centres[:-1]).all()  # in frequency order
    assert (filterbank[:, 1:-1].sum(0) > 0).all()  # every bin inside the band is heard


@pytest.mark.parametrize("separable", [False, True])
def test_padding_leaks_into_nothing(separable):
    frontend = AudioFrontend(output_size=32, n_mels=40, channels=8, separable=separable).eval()
    short = torch.randn(1, 6000)
    padded = torch.cat([short, torch.randn(1, 4000) * 10], dim=1)  # noise where padding is
    mask = torch.arange(10000)[None] < 6000
    alone, alone_mask = frontend(short, torch.ones_like(short, dtype=torch.bool))
    batched, batched_mask = frontend(padded, mask)
    frames = int(alone_mask.sum())
    assert int(batched_mask.sum()) == frames == alone.size(1)
    torch.testing.assert_close(batched[0, :frames], alone[0], rtol=1e-4, atol=1e-4)


def test_normalization_is_per_utterance_over_real_frames():
    features = torch.randn(2, 50, 8) * 3 + 5
    mask = torch.arange(50)[None] < torch.tensor([[50], [30]])
    normalized = normalize_per_utterance(features, mask)
    real = normalized[1, :30]
    torch.testing.assert_close(real.mean(0), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(real.std(0, unbiased=False), torch.ones(8), atol=1e-3, rtol=0)
    assert (normalized[1, 30:] == 0).all()


def test_spec_augment_masks_within_its_limits_and_only_in_training():
    augment = SpecAugment(freq_masks=2, freq_width=5, time_masks=2, time_ratio=0.1)
    features, mask = torch.ones(64, 200, 40), torch.ones(64, 200, dtype=torch.bool)
    assert torch.equal(augment.eval()(features, mask), features)
    masked = augment.train()(features, mask) == 0  # (B, T, M)
    bins_zeroed = masked.all(1).sum(1)  # whole bands: zero over all frames
    frames_zeroed = masked.all(2).sum(1)
    assert bins_zeroed.max() <= 10 and frames_zeroed.max() <= 40
    assert bins_zeroed.float().mean() > 0 and frames_zeroed.float().mean() > 0


def _peak_hz(wave: torch.Tensor, sample_rate: int) -> float:
    spectrum = torch.fft.rfft(wave * torch.hann_window(len(wave))).abs()
    return float(spectrum.argmax()) * sample_rate / len(wave)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_plays_a_tone_faster_or_slower(factor):
    rate, seconds = 16000, 1.0
    tone = torch.sin(2 * torch.pi * 440 * torch.arange(int(rate * seconds)) / rate)
    waves = torch.zeros(3, 20000)  # a tone and two shorter rows of padding-led silence
    waves[0, : len(tone)] = tone
    mask = torch.zeros(3, 20000, dtype=torch.bool)
    mask[0, : len(tone)], mask[1, :8000], mask[2, :5000] = True, True, True
    perturb = SpeedPerturbation([factor], rate).train()
    out, out_mask = perturb(waves, mask)
    lengths = out_mask.sum(1)
    expected = [round(n / factor) for n in (16000, 8000, 5000)]
    assert lengths.tolist() == pytest.approx(expected, abs=1)
    assert out.size(1) == pytest.approx(20000 / factor, abs=2)  # the width follows N alone
    assert _peak_hz(out[0, : lengths[0]], rate) == pytest.approx(440 * factor, abs=2)
    assert torch.all(out[~out_mask] == 0)  # padding stays silent


def test_speed_perturbation_draws_each_factor_and_leaves_evaluation_alone():
    perturb = SpeedPerturbation([0.9, 1.0, 1.1], 16000)
    waves = torch.randn(300, 1600)
    mask = torch.ones(300, 1600, dtype=torch.bool)
    eval_out, eval_mask = perturb.eval()(waves, mask)
    assert eval_out is waves and eval_mask is mask
    torch.manual_seed(0)
    out, out_mask = perturb.train()(waves, mask)
    lengths = out_mask.sum(1)
    counts = {n: int((lengths == n).sum()) for n in (1778, 1600, 1455)}  # 1600 / f
    assert sum(counts.values()) == 300 and min(counts.values()) > 60
    unchanged = lengths == 1600
    assert torch.equal(out[unchanged, :1600], waves[unchanged])
    assert out.size(1) == 1778  # the slowest drawn speed sets the width


@pytest.mark.parametrize("factors", [[], [0.0], [1.0, -1.1]])
def test_speed_perturbation_refuses_factors_that_are_not_speeds(factors):
    with pytest.raises(ValueError, match="must be positive"):
        SpeedPerturbation(factors)


def test_the_separable_subsampler_gives_the_same_frames_with_fewer_multiply_adds():
    full = ConvSubsampling(n_mels=80, output_size=32, channels=64)
    separable = ConvSubsampling(n_mels=80, output_size=32, channels=64, separable=True)
    features, mask = torch.randn(2, 203, 80), torch.arange(203)[None] < torch.tensor([[203], [150]])
    (a, a_mask), (b, b_mask) = full(features, mask), separable(features, mask)
    assert a.shape == b.shape == (2, 50, 32) and torch.equal(a_mask, b_mask)
    assert a_mask.sum(1).tolist() == [50, 36]  # ((n - 1) // 2 - 1) // 2 frames each
    second_full, second_separable = full.convolutions[2], separable.convolutions[2:4]
    weights = sum(p.numel() for p in second_separable.parameters() if p.dim() > 1)
    assert second_full.weight.numel() == 64 * 64 * 9 and weights == 64 * 9 + 64 * 64
