"""Speech synthesis from the same parts: location-sensitive attention, the text-to-speech
network of both decoder families (teacher forcing equals stepping), its losses, greedy synthesis
until the stop token, the Griffin-Lim vocoder, MCD-DTW against a brute-force reference, and a
tiny model learning two utterances by heart."""

import math

import numpy as np
import pytest
import torch
from scipy.fft import idct

from encdec.data.audio import trim_silence
from encdec.data.speech_corpus import Speaker, plan
from encdec.metrics.mel_cepstral_distortion import (
    DB_FACTOR,
    MelCepstralDistortion,
    dtw_path,
    mel_cepstral_distortion,
    mel_cepstrum,
)
from encdec.modules.attention import LocationSensitiveAttention
from encdec.modules.vocoder import GriffinLim
from encdec.training.synthesis_module import SynthesisModule, guided_attention_loss
from encdec.utils.errors import UserError
from tests.conftest import build_tiny, random_batch

SYNTHESIS = ["data=synthesis_commands", "model.net.prenet.dim=16", "model.net.postnet.channels=16"]
TINY_SYNTHESIZERS = {
    "tacotron": [
        "model=tacotron", *SYNTHESIS,
        "model.net.embedding_dim=16",
        "model.net.encoder.hidden_size=16",
        "model.net.decoder.hidden_size=32",
        "model.net.decoder.num_layers=1",
    ],
    "transformer_tts": [
        "model=transformer_tts", *SYNTHESIS,
        "model.net.embedding_dim=32",
        *(f"model.net.{part}.{key}" for part in ("encoder", "decoder")
          for key in ("dim=32", "ff_dim=64", "num_layers=1", "num_heads=2")),
    ],
}  # fmt: skip
SAMPLE_RATE = 16000


def tiny_synthesizer(family: str, *overrides: str) -> SynthesisModule:
    torch.manual_seed(0)
    return build_tiny([*TINY_SYNTHESIZERS[family], *overrides])


def tones(frequencies: list[float], seconds: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sine tones (B, N) zero-padded, and their sample mask."""
    lengths = [round(s * SAMPLE_RATE) for s in seconds]
    audio = torch.zeros(len(lengths), max(lengths))
    for row, (frequency, length) in enumerate(zip(frequencies, lengths, strict=True)):
        time = torch.arange(length) / SAMPLE_RATE
        audio[row, :length] = 0.5 * torch.sin(2 * math.pi * frequency * time)
    return audio, torch.arange(audio.size(1))[None] < torch.tensor(lengths)[:, None]


# ---- location-sensitive attention ----
def test_location_sensitive_attention_reads_where_it_attended_before():
    torch.manual_seed(0)
    attention = LocationSensitiveAttention(8, 6, 8)
    states = torch.randn(2, 5, 6)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    keys, query = attention.project_keys(states), torch.randn(2, 1, 8)
    before = torch.zeros(2, 2, 5)
    _, weights = attention(query, keys, states, mask, before)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 1))
    assert (weights[1, 0, 3:] == 0).all()  # padding gets nothing
    after = before.clone()
    after[:, :, 0] = 1.0  # it attended to position 0 before
    _, moved = attention(query, keys, states, mask, after)
    assert not torch.allclose(weights, moved)


# ---- the network ----
@pytest.mark.parametrize("family", sorted(TINY_SYNTHESIZERS))
def test_teacher_forcing_equals_stepping_on_the_reference_frames(family):
    net = tiny_synthesizer(family, "model.net.prenet.dropout_at_inference=false").net.eval()
    src, src_mask = random_batch()
    audio, audio_mask = tones([300, 500, 700, 900], [0.3, 0.2, 0.25, 0.15])
    output = net.teacher_forced(src, src_mask, audio, audio_mask)
    r = net.frames_per_step
    memory = net.encode(src, src_mask)
    state, previous = net.init_state(memory), torch.zeros(4, net.n_mels)
    for step in range(output.stop_logits.size(1)):
        group, state, _ = net.step(previous, state, memory)
        expected = output.frames[:, step * r : (step + 1) * r]
        assert torch.allclose(group.frames, expected, atol=1e-5), step
        assert torch.allclose(group.stop_logit, output.stop_logits[:, step], atol=1e-5)
        previous = output.target[:, (step + 1) * r - 1]
    assert torch.equal(output.frame_mask.sum(1), net.mel.frames(audio_mask.sum(1)))


def test_the_attention_rnn_decoder_keeps_its_alignment_through_reordering():
    net = tiny_synthesizer("tacotron").net.eval()
    src, src_mask = random_batch()
    memory = net.encode(src, src_mask)
    state = net.init_state(memory)
    _, state, _ = net.step(torch.zeros(4, net.n_mels), state, memory)
    index = torch.tensor([2, 0])
    reordered = state.reorder(index)
    assert torch.equal(reordered.alignment, state.alignment[index])
    assert torch.allclose(state.alignment[:, 0].sum(-1), torch.ones(4))  # this step's weights
    assert torch.allclose(state.alignment[:, 1], state.alignment[:, 0])  # the running sum


def test_losses_of_a_batch_and_the_guided_attention_penalty():
    module = tiny_synthesizer("tacotron")
    src, src_mask = random_batch()
    audio, audio_mask = tones([300, 500, 700, 900], [0.3, 0.2, 0.25, 0.15])
    output = module.net.teacher_forced(src, src_mask, audio, audio_mask)
    losses = module.synthesis_losses(output, src_mask)
    assert set(losses) == {"loss", "mel", "stop", "guided_attention"}
    expected = losses["mel"] + losses["stop"] + losses["guided_attention"]
    assert torch.allclose(losses["loss"], expected)
    # attention exactly on the diagonal costs nothing; attention on the anti-diagonal does
    eye = torch.eye(4)[None]
    every = torch.ones(1, 4, dtype=torch.bool)
    assert guided_attention_loss(eye, every, every, 0.2) == 0
    anti = eye.flip(2)
    penalty = 1 - math.exp(-((3 / 4) ** 2) / (2 * 0.2**2))  # the two corners, |s - t| = 3/4
    expected_anti = (2 * penalty + 2 * (1 - math.exp(-((1 / 4) ** 2) / 0.08))) / 4
    assert guided_attention_loss(anti, every, every, 0.2).item() == pytest.approx(expected_anti)


def test_the_transformers_guided_heads_give_the_guided_loss_its_attention():
    src, src_mask = random_batch()
    audio, audio_mask = tones([300, 500, 700, 900], [0.3, 0.2, 0.25, 0.15])
    module = tiny_synthesizer("transformer_tts", "model.net.decoder.guided_heads=1")
    output = module.net.teacher_forced(src, src_mask, audio, audio_mask)
    assert output.attention.shape == (4, output.step_mask.size(1), src.size(1))
    torch.testing.assert_close(output.attention.sum(-1), torch.ones(output.attention.shape[:2]))
    assert (output.attention[~src_mask[:, None].expand_as(output.attention)] == 0).all()
    cross_attention = module.net.decoder.layers[-1].cross_attention
    assert not cross_attention.keep_weights and cross_attention.weights is None  # SDPA again
    losses = module.synthesis_losses(output, src_mask)
    losses["guided_attention"].backward()  # the guided head's queries and keys learn from it
    assert cross_attention.query_proj.weight.grad.abs().sum() > 0
    # synthesis's alignment plots show the same heads: stepping equals teacher forcing
    net = tiny_synthesizer(
        "transformer_tts", "model.net.decoder.guided_heads=1",
        "model.net.prenet.dropout_at_inference=false",
    ).net.eval()  # fmt: skip
    with torch.no_grad():
        expected = net.teacher_forced(src, src_mask, audio, audio_mask).attention[:, 0]
        memory = net.encode(src, src_mask)
        with net.returning_attention():
            _, _, stepped = net.step(torch.zeros(4, net.n_mels), net.init_state(memory), memory)
    torch.testing.assert_close(stepped, expected)
    unguided = tiny_synthesizer("transformer_tts", "model.net.decoder.guided_heads=0")
    output = unguided.net.teacher_forced(src, src_mask, audio, audio_mask)
    with pytest.raises(UserError, match="model.net.decoder.guided_heads > 0"):
        unguided.synthesis_losses(output, src_mask)


@pytest.mark.parametrize(("bias", "stopped"), [(50.0, True), (-50.0, False)])
def test_greedy_synthesis_ends_at_the_stop_token_or_the_frame_limit(bias, stopped):
    net = tiny_synthesizer("tacotron").net.eval()
    torch.nn.init.constant_(net.stop_head.bias, bias)
    src, src_mask = random_batch()
    results = net.synthesize(src, src_mask, keep_alignment=True)
    limits = net.frame_limits(src_mask)
    for result, limit, length in zip(results, limits, src_mask.sum(1), strict=True):
        assert result.stopped is stopped
        expected = net.frames_per_step if stopped else -(-int(limit) // 2) * 2
        assert result.log_mel.shape == (expected, net.n_mels)
        assert result.alignment.shape == (expected // 2, int(length))


def test_beam_search_is_refused_for_spectrogram_outputs():
    net = tiny_synthesizer("tacotron").net
    with pytest.raises(UserError, match="beam search and sampling are for discrete outputs"):
        net.generate(*random_batch())


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(TINY_SYNTHESIZERS))
def test_a_tiny_synthesizer_learns_two_utterances_by_heart(family):
    """Both families fit two tones and their ends; greedy synthesis comes nearer its own tone
    than the other. Tacotron's location-sensitive attention also stops on time when it runs on
    its own frames; the tiny Transformer sometimes runs past its end there (its stop token
    sees no alignment), so only Tacotron's lengths are checked."""
    module = tiny_synthesizer(family, "model.net.prenet.dropout_at_inference=false",
                              "model.net.prenet.dropout=0.0")  # fmt: skip
    net = module.net
    src, src_mask = random_batch(batch=2)
    audio, audio_mask = tones([400, 1200], [0.4, 0.25])
    log_mel, frame_mask = net.log_mel(audio, audio_mask)
    frames = log_mel[frame_mask]
    net.set_normalization(frames.mean(0), frames.std(0))
    batch = {"source": src, "source_mask": src_mask, "audio": audio, "audio_mask": audio_mask}
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    losses = []
    for _ in range(150):
        optimizer.zero_grad()
        loss = module.training_step(batch, 0)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    net.eval()
    assert losses[-1] < 0.25 * losses[0]
    output = net.teacher_forced(src, src_mask, audio, audio_mask)
    stop_logits = output.stop_logits.masked_fill(~output.step_mask, -torch.inf)  # (B, steps)
    assert torch.equal(stop_logits.argmax(1), output.step_mask.sum(1) - 1)  # the ends
    results = net.synthesize(src, src_mask)
    references = [log_mel[row][frame_mask[row]] for row in range(2)]
    metric, swapped = MelCepstralDistortion(), MelCepstralDistortion()
    metric.update([r.log_mel for r in results], references)
    swapped.update([r.log_mel for r in results], references[::-1])
    assert metric.compute()["mcd"] < 0.5 * swapped.compute()["mcd"]
    if family == "tacotron":
        for result, reference in zip(results, references, strict=True):
            assert result.stopped and abs(len(result.log_mel) - len(reference)) <= 4


# ---- vocoder ----
def test_griffin_lim_turns_a_tone_back_into_that_tone():
    net = tiny_synthesizer("tacotron").net
    audio, mask = tones([1000.0], [0.5])
    log_mel, _ = net.log_mel(audio, mask)
    vocoder = GriffinLim(net.mel, iterations=32)
    wave = vocoder(log_mel[0])
    assert torch.equal(wave, vocoder(log_mel[0]))  # seeded: the same spectrogram, the same wave
    spectrum = torch.fft.rfft(wave).abs()
    peak_hz = float(spectrum.argmax()) * SAMPLE_RATE / len(wave)
    assert abs(peak_hz - 1000.0) < 40.0  # within the mel band around it
    rebuilt, _ = net.log_mel(wave[None], torch.ones(1, len(wave), dtype=torch.bool))
    frames = min(rebuilt.size(1), log_mel.size(1))
    offset = rebuilt[0, :frames].argmax(1) - log_mel[0, :frames].argmax(1)
    assert (offset.abs() <= 1).all()  # every frame loudest in the tone's mel band


def test_griffin_lim_finds_the_non_negative_spectrum_whose_mel_is_the_given_one():
    net = tiny_synthesizer("tacotron").net
    generator = torch.Generator().manual_seed(0)
    power = torch.rand(30, net.mel.filterbank.size(1), generator=generator) ** 4  # (T, F), peaky
    mel_power = power @ net.mel.filterbank.T  # (T, M)
    log_mel = torch.log(mel_power + 1e-6)

    def projection_error(vocoder: GriffinLim) -> float:
        found = vocoder.magnitude(log_mel).T ** (2 / vocoder.power)  # (T, F) power again
        assert (found >= 0).all()
        return float((found @ net.mel.filterbank.T - mel_power).norm() / mel_power.norm())

    least_squares = projection_error(GriffinLim(net.mel, power=1.0))
    clipped_pseudo_inverse = projection_error(GriffinLim(net.mel, power=1.0, nnls_iterations=0))
    assert least_squares < 2e-3 < clipped_pseudo_inverse


# ---- MCD-DTW ----
def brute_force_dtw(distances: np.ndarray) -> float:
    """The cheapest monotonic path's cost by trying every path (tiny matrices only)."""
    rows, columns = distances.shape
    best = math.inf

    def walk(i: int, j: int, cost: float) -> None:
        nonlocal best
        cost += distances[i, j]
        if (i, j) == (rows - 1, columns - 1):
            best = min(best, cost)
            return
        for di, dj in ((1, 0), (0, 1), (1, 1)):
            if i + di < rows and j + dj < columns:
                walk(i + di, j + dj, cost)

    walk(0, 0, 0.0)
    return best


@pytest.mark.parametrize("seed", range(5))
def test_dtw_finds_the_cheapest_path(seed):
    distances = np.random.default_rng(seed).random((4, 5))
    path_i, path_j = dtw_path(distances)
    assert (path_i[0], path_j[0]) == (0, 0) and (path_i[-1], path_j[-1]) == (3, 4)
    steps = set(zip(np.diff(path_i), np.diff(path_j), strict=True))
    assert steps <= {(1, 0), (0, 1), (1, 1)}
    assert distances[path_i, path_j].sum() == pytest.approx(brute_force_dtw(distances))


def test_mcd_is_zero_for_the_same_speech_however_stretched_and_exact_for_an_offset():
    rng = np.random.default_rng(0)
    log_mel = rng.normal(size=(20, 80))
    assert mel_cepstral_distortion(log_mel, log_mel) == 0
    assert mel_cepstral_distortion(np.repeat(log_mel, 2, axis=0), log_mel) == pytest.approx(0)
    # a shift of the cepstrum's first coefficient by delta, everywhere: (10/ln 10) sqrt(2) delta
    delta, basis = 0.3, np.zeros((1, 80))
    basis[0, 1] = 1.0
    shift = idct(basis, type=2, norm="ortho", axis=1) * 2  # log power: twice the amplitude's
    shifted = log_mel + delta * shift
    assert mel_cepstrum(shifted)[:, 0] - mel_cepstrum(log_mel)[:, 0] == pytest.approx(delta)
    assert mel_cepstral_distortion(shifted, log_mel) == pytest.approx(DB_FACTOR * delta)


# ---- the single-voice corpus plan ----
def test_shards_of_one_voice_say_distinct_sentences(tmp_path):
    voice = {"engine": "espeak-ng", "voice": "en-us", "rate": 160, "pitch": 50, "speed": 1.0,
             "reverb": 0, "telephone": False, "snr_db": None}  # fmt: skip
    speakers = {"train": [Speaker(name=f"train-{i}", **voice) for i in range(3)]}
    texts = {"train": [f"sentence {n}" for n in range(10)]}
    jobs, manifests = plan(tmp_path, texts, speakers, {"train": 4}, 16000, 0, True)
    said = [text for job in jobs for text in job[1]]
    assert len(said) == len(set(said)) == 10  # 4 + 4 + 2: every sentence once
    assert [row["text"] for row in manifests["train"]] == said
    assert [len(job[1]) for job in jobs] == [4, 4, 2]


def test_leading_and_trailing_silence_is_trimmed_with_a_margin():
    tone, _ = tones([500.0], [0.5])
    wave = torch.cat([torch.zeros(4800), tone[0], torch.zeros(8000)])  # 0.3 s + 0.5 s + 0.5 s
    trimmed = trim_silence(wave, SAMPLE_RATE, below_peak_db=40.0, margin_s=0.05)
    seconds = len(trimmed) / SAMPLE_RATE
    assert 0.5 <= seconds <= 0.5 + 2 * (0.05 + 0.025) + 0.01  # tone, margins, edge windows
    assert trimmed.abs().max() == wave.abs().max()
    silence = torch.zeros(16000)
    assert torch.equal(trim_silence(silence, SAMPLE_RATE), silence)  # nothing loud: kept whole
