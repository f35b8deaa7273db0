"""A speech recognizer composed from the same parts: the audio front-end where a text source
has embeddings, any encoder, any decoder, a CTC head. Hybrid CTC/attention loss weights, and a
tiny model overfitting two synthesized utterances, decoded greedily by the decoder, by the
joint CTC/attention beam and by CTC's best path. (The attention-only beam of so peaked a model
stops once it has finished hypotheses that are worse than its live best: see search.py.)"""

import functools
import json

import pytest
import soundfile
import torch
from torch.nn.utils.rnn import pad_sequence

from encdec.data.speech_corpus import build_speech_corpus, speaker_table
from encdec.decoding.search import DecodingConfig
from encdec.modules.audio_frontend import AudioFrontend
from encdec.modules.transformer import TransformerDecoder, TransformerEncoder
from encdec.networks.encoder_decoder import EncoderDecoder
from encdec.training.seq2seq_module import Seq2SeqModule
from encdec.utils.errors import UserError
from encdec.utils.special_tokens import BOS_ID, EOS_ID, PAD_ID
from tests.conftest import learn_by_heart

SENTENCES = ["walk left", "jump twice"]
CHARACTERS = sorted(set("".join(SENTENCES)))
VOCAB = 4 + len(CHARACTERS)


def encode(text: str) -> list[int]:
    return [4 + CHARACTERS.index(c) for c in text]


def decode(tokens: list[int]) -> str:
    return "".join(CHARACTERS[t - 4] for t in tokens)


def speech_net(ctc: bool = True) -> EncoderDecoder:
    layers = {"num_heads": 2, "ff_dim": 64, "dropout": 0.0, "attention_dropout": 0.0}
    return EncoderDecoder(
        target_vocab_size=VOCAB,
        encoder=functools.partial(TransformerEncoder, dim=32, num_layers=2, **layers),
        decoder=functools.partial(TransformerDecoder, dim=32, num_layers=1, **layers),
        embedding_dim=32,
        frontend=functools.partial(AudioFrontend, output_size=32, n_mels=40, channels=8),
        ctc=ctc,
    )


def module(net: EncoderDecoder, ctc_weight: float) -> Seq2SeqModule:
    return Seq2SeqModule(
        net,
        optimizer=functools.partial(torch.optim.Adam, lr=3e-3),
        scheduler=functools.partial(torch.optim.lr_scheduler.LambdaLR, lr_lambda=lambda _: 1.0),
        label_smoothing=0.0,
        ctc_weight=ctc_weight,
    )


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> dict[str, torch.Tensor]:
    """Two utterances of one espeak-ng speaker, padded: waveforms, sample mask, targets."""
    speakers = speaker_table({"train": 1}, held_out_engine="flite", seed=3)
    corpus = build_speech_corpus(
        tmp_path_factory.mktemp("speech"), {"train": SENTENCES}, speakers, 2, seed=3
    )
    rows = (corpus / "train.jsonl").read_text().splitlines()
    waves, texts = [], []
    for row in map(json.loads, rows):
        audio, _ = soundfile.read(corpus / row["audio_filepath"], dtype="float32")
        waves.append(torch.from_numpy(audio))
        texts.append(row["text"])
    source = pad_sequence(waves, batch_first=True)
    lengths = torch.tensor([len(w) for w in waves])
    targets = [torch.tensor(encode(t)) for t in texts]
    target_in = pad_sequence([torch.cat([torch.tensor([BOS_ID]), t]) for t in targets], True)
    target_out = pad_sequence([torch.cat([t, torch.tensor([EOS_ID])]) for t in targets], True)
    return {
        "source": source,
        "source_mask": torch.arange(source.size(1))[None] < lengths[:, None],
        "target_in": target_in,
        "target_out": target_out,
        "texts": texts,
    }


def test_the_loss_mixes_ctc_and_cross_entropy_by_its_weight(batch):
    torch.manual_seed(0)
    net = speech_net().eval()
    losses = {}
    for weight in (0.0, 1.0, 0.3):
        losses[weight] = float(module(net, weight).training_step(batch, 0))
    assert losses[0.3] == pytest.approx(0.3 * losses[1.0] + 0.7 * losses[0.0], rel=1e-5)
    output = net.teacher_forced(batch["source"], batch["source_mask"], batch["target_in"])
    lengths = output.ctc_mask.sum(1)
    expected = torch.nn.functional.ctc_loss(
        output.ctc_log_probs.transpose(0, 1),
        torch.cat([torch.tensor(encode(t)) for t in batch["texts"]]),
        lengths,
        torch.tensor([len(t) for t in batch["texts"]]),
        blank=PAD_ID,
        reduction="sum",
    )
    tokens = (batch["target_out"] != PAD_ID).sum()
    assert losses[1.0] == pytest.approx(float(expected / tokens), rel=1e-5)


def test_a_tiny_recognizer_learns_two_utterances_and_every_search_reads_them(batch):
    torch.manual_seed(0)
    net = speech_net()
    learn_by_heart(module(net, ctc_weight=0.5), batch, steps=300)
    searches = {
        "attention greedy": DecodingConfig(beam_size=1, max_len_a=0.0, max_len_b=20),
        "joint beam": DecodingConfig(beam_size=3, max_len_a=0.0, max_len_b=20, ctc_weight=0.5),
        "ctc best path": DecodingConfig(beam_size=1, ctc_weight=1.0),
    }
    for name, config in searches.items():
        hypotheses = net.generate(batch["source"], batch["source_mask"], config)
        assert [decode(h[0].tokens) for h in hypotheses] == batch["texts"], name


def test_a_ctc_only_recognizer_has_no_decoder_and_reads_by_best_path(batch):
    torch.manual_seed(0)
    net = EncoderDecoder(
        target_vocab_size=VOCAB,
        encoder=functools.partial(
            TransformerEncoder, dim=32, num_layers=2, num_heads=2, ff_dim=64, dropout=0.0,
            attention_dropout=0.0,
        ),
        decoder=None,
        frontend=functools.partial(AudioFrontend, output_size=32, n_mels=40, channels=8),
        ctc=True,
    )  # fmt: skip
    assert net.decoder is None and net.generator is None
    assert all(not name.startswith(("decoder", "generator")) for name, _ in net.named_parameters())
    with pytest.raises(UserError, match="trains with model.ctc_weight=1"):
        module(net, ctc_weight=0.5)
    learn_by_heart(module(net, ctc_weight=1.0), batch, steps=200)
    greedy = DecodingConfig(beam_size=1, max_len_a=0.0, max_len_b=20)  # becomes CTC's best path
    hypotheses = net.generate(batch["source"], batch["source_mask"], greedy)
    assert [decode(h[0].tokens) for h in hypotheses] == batch["texts"]
    with pytest.raises(UserError, match="decodes by CTC's best path"):
        net.generate(batch["source"], batch["source_mask"], DecodingConfig(beam_size=3))


def test_a_network_without_decoder_needs_a_ctc_head():
    with pytest.raises(ValueError, match="needs a CTC head"):
        EncoderDecoder(
            target_vocab_size=VOCAB,
            encoder=functools.partial(TransformerEncoder, dim=32, num_layers=1),
            decoder=None,
            frontend=functools.partial(AudioFrontend, output_size=32, n_mels=40, channels=8),
        )
