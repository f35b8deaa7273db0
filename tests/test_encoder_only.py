"""Encoder-only, non-autoregressive models (model=encoder_ctc): the source upsampled, encoded
and read out by a CTC head; every output token at once, through the same training and decoding
paths and the real entry points."""

import pytest
import torch

from encdec.modules.transformer import TransformerEncoder
from encdec.modules.upsampling import UpsampledEncoder
from tests.conftest import build_tiny, learn_by_heart, random_batch, target_batch
from tests.test_entry_points import _cli, train_and_translate

TINY_ENCODER_CTC = [
    "model=encoder_ctc",
    "model.net.embedding_dim=32",
    *(f"model.net.encoder.encoder.{k}" for k in ("dim=32", "ff_dim=64", "num_layers=2")),
]


def tiny_upsampler(factor: int) -> UpsampledEncoder:
    def transformer(input_size: int) -> TransformerEncoder:
        return TransformerEncoder(input_size, dim=16, num_heads=2, ff_dim=32, num_layers=1)

    torch.manual_seed(0)
    return UpsampledEncoder(16, factor, transformer).eval()


def test_upsampling_keeps_each_rows_real_positions_first_and_ignores_padding():
    upsampler = tiny_upsampler(factor=3)
    vectors = torch.randn(2, 4, 16)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    encoded = upsampler(vectors, mask)
    assert encoded.states.shape == (2, 12, 16)
    assert encoded.mask.sum(1).tolist() == [12, 6] and encoded.mask[1, :6].all()
    wider = torch.cat([vectors, torch.randn(2, 2, 16)], dim=1)  # more padding, other contents
    again = upsampler(wider, torch.nn.functional.pad(mask, (0, 2)))
    torch.testing.assert_close(again.states[1, :6], encoded.states[1, :6], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="factor must be >= 1"):
        tiny_upsampler(factor=0)


def test_an_encoder_only_model_learns_outputs_longer_than_its_input_by_heart():
    torch.manual_seed(0)
    model = build_tiny([*TINY_ENCODER_CTC, "model.net.encoder.factor=3"])
    assert model.net.decoder is None and model.net.generator is None
    src, mask = random_batch(batch=4, src_len=4, seed=2)
    lengths = mask.sum(1)
    targets = [torch.randint(4, 24, (int(2 * n),)).tolist() for n in lengths]  # 2x the input
    learn_by_heart(model, target_batch(src, mask, targets), steps=300)
    with torch.no_grad():
        decoded = model.net.generate(src, mask)
    assert [n_best[0].tokens for n_best in decoded] == targets


def test_encoder_ctc_trains_tests_and_translates_through_the_entry_points(tmp_path):
    factor = "model.net.encoder.factor=6"  # SCAN's actions: up to 48 for up to 9 words
    best = train_and_translate(
        tmp_path / "run", [*TINY_ENCODER_CTC, factor], ["jump twice", "look"]
    )
    assert (tmp_path / "run" / "predictions" / "test.txt").is_file()  # best path: no beam
    beam = _cli("encdec.translate", f"ckpt_path={best}", "decoding.beam_size=4", stdin="look\n")
    assert beam.returncode != 0
    assert "decodes by CTC's best path" in beam.stderr.strip().splitlines()[-1]
