"""The Conformer encoder: a clip's states do not depend on the padding or the other clips of
its batch, gradients never flow from padded frames, the convolution sees exactly
``kernel_size`` frames, a bad width is one line, and a tiny recognizer with it learns two
utterances by heart (every encoder config composes with every decoder in test_composition.py)."""

import functools

import pytest
import torch

from encdec.decoding.search import DecodingConfig
from encdec.modules.audio_frontend import AudioFrontend
from encdec.modules.conformer import ConformerEncoder, ConvolutionModule
from encdec.modules.transformer import TransformerDecoder
from encdec.networks.encoder_decoder import EncoderDecoder
from tests.conftest import learn_by_heart
from tests.test_speech_network import SENTENCES, VOCAB, batch, decode, module  # noqa: F401

DECODING = {"beam_size": 1, "max_len_a": 0.0, "max_len_b": 20}


def tiny_encoder(**overrides) -> ConformerEncoder:
    settings = {"dim": 16, "num_heads": 2, "ff_dim": 32, "num_layers": 2, "kernel_size": 5}
    return ConformerEncoder(input_size=12, **(settings | overrides))


def test_a_clip_encodes_the_same_alone_and_padded_in_a_batch():
    torch.manual_seed(0)
    encoder = tiny_encoder().eval()
    short, long = torch.randn(1, 7, 12), torch.randn(1, 11, 12)
    alone = encoder(short, torch.ones(1, 7, dtype=torch.bool)).states
    padded = torch.cat([short, torch.full((1, 4, 12), 1e3)], 1)  # loud garbage as padding
    together = encoder(
        torch.cat([padded, long]), torch.arange(11)[None] < torch.tensor([[7], [11]])
    )
    assert torch.allclose(together.states[0, :7], alone[0], atol=1e-5)
    alone_long = encoder(long, torch.ones(1, 11, dtype=torch.bool)).states
    assert torch.allclose(together.states[1], alone_long[0], atol=1e-5)


def test_no_gradient_reaches_the_padded_frames():
    encoder = tiny_encoder().eval()
    frames = torch.randn(1, 9, 12, requires_grad=True)
    mask = torch.arange(9)[None] < 6
    encoder(frames, mask).states[0, :6].sum().backward()
    assert frames.grad[0, 6:].abs().max() == 0
    assert frames.grad[0, :6].abs().min() > 0


def test_the_convolution_reads_kernel_size_frames_around_each_frame():
    convolution = ConvolutionModule(dim=4, kernel_size=5).eval()
    frames = torch.randn(1, 12, 4, requires_grad=True)
    convolution(frames, torch.ones(1, 12, dtype=torch.bool))[0, 6].sum().backward()
    reached = frames.grad[0].abs().sum(1) > 0
    assert reached.tolist() == [i in range(4, 9) for i in range(12)]


def test_an_even_kernel_is_refused_in_one_line():
    with pytest.raises(ValueError, match="kernel_size=4 must be odd"):
        tiny_encoder(kernel_size=4)


def test_a_conformer_recognizer_learns_two_utterances(batch):  # noqa: F811
    torch.manual_seed(0)
    layers = {"num_heads": 2, "ff_dim": 64, "dropout": 0.0, "attention_dropout": 0.0}
    net = EncoderDecoder(
        target_vocab_size=VOCAB,
        encoder=functools.partial(ConformerEncoder, dim=32, num_layers=2, kernel_size=7, **layers),
        decoder=functools.partial(TransformerDecoder, dim=32, num_layers=1, **layers),
        embedding_dim=32,
        frontend=functools.partial(AudioFrontend, output_size=32, n_mels=40, channels=8),
        ctc=True,
    )
    learn_by_heart(module(net, ctc_weight=0.5), batch, steps=300)
    hypotheses = net.generate(batch["source"], batch["source_mask"], DecodingConfig(**DECODING))
    assert [decode(h[0].tokens) for h in hypotheses] == batch["texts"]
