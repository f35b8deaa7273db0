"""A pretrained vocabulary renumbered to this project's special ids: the order for T5's, BART's
and GPT-2's conventions, the tokenizer that reads text with the new ids, and the model whose
renumbered rows compute exactly what the pretrained one did on the same text."""

import shutil

import pytest
import torch
import transformers

from encdec.data.tokenization import load_or_train_tokenizer
from encdec.networks.hugging_face import build_model
from encdec.utils.errors import UserError
from encdec.utils.pretrained_vocabulary import vocabulary_order
from encdec.utils.special_tokens import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID
from tests.pretrained_directories import save_pretrained

AUTO_CLASS = {
    "t5": "AutoModelForSeq2SeqLM",
    "bart": "AutoModelForSeq2SeqLM",
    "gpt2": "AutoModelForCausalLM",
}
TEXT = "jump twice and look zebra"  # zebra: not in the vocabulary


def test_the_order_moves_each_role_first_and_adds_what_a_vocabulary_lacks():
    # T5: pad 0, eos 1, unk 2; its decoder starts from pad, so <s> is a copy of pad's row
    t5 = vocabulary_order(6, [0, 2, 0, 1], {"<pad>", "</s>", "<unk>"})
    assert t5.rows == [0, 2, 0, 1, 3, 4, 5] and t5.added == {BOS_ID: "<s>"}
    assert t5.new_ids() == {0: 0, 2: 1, 1: 3, 3: 4, 4: 5, 5: 6}
    # BART: its decoder starts from eos, which keeps the end; "<s>" is taken (its bos, id 0)
    bart = vocabulary_order(5, [1, 3, 2, 2], {"<s>", "<pad>", "</s>", "<unk>"})
    assert bart.rows == [1, 3, 2, 2, 0, 4] and bart.added == {BOS_ID: "<encdec:s>"}
    # GPT-2: one token both starts and ends; no pad, no unk (their rows: the mean)
    gpt2 = vocabulary_order(4, [None, None, 3, 3], {"<|endoftext|>"})
    assert gpt2.rows == [None, None, 3, 3, 0, 1, 2]
    assert gpt2.added == {PAD_ID: "<pad>", UNK_ID: "<unk>", BOS_ID: "<s>"}
    mine = vocabulary_order(6, [0, 1, 2, 3], set(SPECIAL_TOKENS))
    assert mine.is_identity and not t5.is_identity


@pytest.mark.parametrize("family", sorted(AUTO_CLASS))
def test_renumbered_tokenizer_and_model_compute_what_the_pretrained_ones_did(tmp_path, family):
    directory = save_pretrained(family, tmp_path / family)
    original_tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    tokenizer = load_or_train_tokenizer(tmp_path, None, [], "bpe", 8, pretrained=str(directory))
    assert tokenizer.joint
    assert tokenizer.target.token_to_id(original_tokenizer.eos_token) == EOS_ID
    assert tokenizer.target.id_to_token(PAD_ID) is not None  # every role has a token
    new = tokenizer.encode_source([TEXT])[0]
    old = original_tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    assert len(new) == len(old)
    assert new[-1] == (EOS_ID if family == "gpt2" else UNK_ID)  # GPT-2 reads it as its end
    assert tokenizer.decode_target([BOS_ID, *new[:4], EOS_ID, new[0]]) == "jump twice and look"

    auto_class = getattr(transformers, AUTO_CLASS[family])
    original = auto_class.from_pretrained(directory).eval()
    renumbered = build_model(auto_class, None, str(directory), tokenizer.target_vocab_size).eval()
    rows = build_rows(tokenizer, original_tokenizer, original.config)
    with torch.no_grad():
        if family == "gpt2":
            logits = renumbered(input_ids=torch.tensor([[*new, BOS_ID]])).logits
            expected = original(input_ids=torch.tensor([[*old, rows[BOS_ID]]])).logits
        else:  # the decoder from the project's <s>, the pretrained one's start token
            start = [BOS_ID, *new[:2]], [rows[BOS_ID], *old[:2]]
            logits = renumbered(
                input_ids=torch.tensor([new]), decoder_input_ids=torch.tensor([start[0]])
            ).logits
            expected = original(
                input_ids=torch.tensor([old]), decoder_input_ids=torch.tensor([start[1]])
            ).logits
    known = [new_id for new_id, old_id in enumerate(rows) if old_id is not None]
    assert logits.size(-1) == tokenizer.target_vocab_size
    torch.testing.assert_close(logits[..., known], expected[..., [rows[i] for i in known]])
    assert renumbered.config.pad_token_id == PAD_ID and renumbered.config.eos_token_id == EOS_ID


def build_rows(tokenizer, original_tokenizer, config) -> list[int | None]:
    """Each new id's pretrained id, read off the two tokenizers (independently of the order the
    code computed): the same text, or the role's token."""
    start = config.decoder_start_token_id if config.is_encoder_decoder else config.bos_token_id
    roles = [
        original_tokenizer.pad_token_id,
        original_tokenizer.unk_token_id,
        start,
        config.eos_token_id,
    ]
    rows = []
    for new_id in range(tokenizer.target_vocab_size):
        text = tokenizer.target.id_to_token(new_id)
        old_id = (
            original_tokenizer.convert_tokens_to_ids(text)
            if text in original_tokenizer.get_vocab()
            else None
        )
        rows.append(roles[new_id] if new_id < len(roles) else old_id)
    return rows


def test_a_pretrained_tokenizer_it_cannot_read_is_one_clear_line(tmp_path):
    save_pretrained("t5", tmp_path / "t5")
    missing = tmp_path / "missing"
    with pytest.raises(UserError, match=f"data.tokenizer.pretrained={missing}: ") as error:
        load_or_train_tokenizer(tmp_path, None, [], "bpe", 8, pretrained=str(missing))
    assert "\n" not in str(error.value)
    model_only = tmp_path / "model_only"  # no tokenizer files: never an empty default one
    model_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tmp_path / "t5" / name, model_only / name)
    with pytest.raises(UserError, match="it has no tokenizer"):
        load_or_train_tokenizer(tmp_path, None, [], "bpe", 8, pretrained=str(model_only))
    with pytest.raises(UserError, match="leave data.tokenizer.source_pretrained null"):
        load_or_train_tokenizer(
            tmp_path, None, [], "bpe", 8, pretrained=str(tmp_path / "t5"), source_pretrained="x"
        )
