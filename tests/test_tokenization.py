"""Tests for the BPE and word tokenizers, their serialization and the on-disk cache."""

import gzip
import threading
from functools import cache
from pathlib import Path

import pytest

from encdec.data.tokenization import (
    BOS,
    BOS_ID,
    EOS,
    EOS_ID,
    PAD,
    PAD_ID,
    UNK,
    Seq2SeqTokenizer,
    load_or_train_tokenizer,
    sample_pairs,
    train_tokenizer,
)
from encdec.utils.special_tokens import UNK_ID

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
MULTI30K_DIR = DATA_DIR / "multi30k"

SCAN_PAIRS = [
    ("jump twice after walk left", "I_TURN_LEFT I_WALK I_JUMP I_JUMP"),
    ("walk left", "I_TURN_LEFT I_WALK"),
    ("look opposite right thrice", "I_TURN_RIGHT I_TURN_RIGHT I_LOOK " * 2 + "I_LOOK"),
    ("run around left and turn right", "I_TURN_LEFT I_RUN " * 4 + "I_TURN_RIGHT"),
]
SCAN_COMMANDS = [command for command, _ in SCAN_PAIRS]
SCAN_ACTIONS = [actions.strip() for _, actions in SCAN_PAIRS]
SCAN_COMMAND_WORDS = {word for command in SCAN_COMMANDS for word in command.split()}
SCAN_ACTION_WORDS = {word for actions in SCAN_ACTIONS for word in actions.split()}


@cache
def _read_lines(name: str, count: int) -> tuple[str, ...]:
    with gzip.open(MULTI30K_DIR / name, "rt", encoding="utf-8") as file:
        return tuple(line.rstrip("\n") for line, _ in zip(file, range(count), strict=False))


def multi30k(language: str, count: int) -> list[str]:
    """The first ``count`` training sentences of Multi30k in ``language``."""
    if not MULTI30K_DIR.is_dir():
        pytest.skip(f"Multi30k not found at {MULTI30K_DIR}")
    return list(_read_lines(f"train.{language}.gz", count))


@pytest.fixture(scope="module")
def de_en_bpe() -> Seq2SeqTokenizer:
    return Seq2SeqTokenizer.train(
        multi30k("de", 5000), multi30k("en", 5000), "bpe", vocab_size=2000, joint=False
    )


def scan_word_tokenizer(joint: bool) -> Seq2SeqTokenizer:
    return Seq2SeqTokenizer.train(
        SCAN_COMMANDS, SCAN_ACTIONS, "word", vocab_size=100, joint=joint, min_frequency=1
    )


def test_bpe_round_trip_on_real_sentences(de_en_bpe: Seq2SeqTokenizer) -> None:
    german, english = multi30k("de", 500), multi30k("en", 500)
    for ids, text in zip(de_en_bpe.encode_source(german), german, strict=True):
        assert UNK_ID not in ids
        assert de_en_bpe.decode_source(ids) == text
    for ids, text in zip(de_en_bpe.encode_target(english), english, strict=True):
        assert UNK_ID not in ids
        assert de_en_bpe.decode_target(ids) == text


def test_bpe_encodes_unseen_characters_without_unk(de_en_bpe: Seq2SeqTokenizer) -> None:
    text = "Größe: 5 € — naïve café, 東京 🚲"
    [ids] = de_en_bpe.encode_target([text])
    assert UNK_ID not in ids
    assert de_en_bpe.decode_target(ids) == text


def test_bpe_vocab_size(de_en_bpe: Seq2SeqTokenizer) -> None:
    assert de_en_bpe.source_vocab_size == 2000
    assert de_en_bpe.target_vocab_size == 2000


@pytest.mark.parametrize("kind", ["bpe", "word", "char"])
def test_special_token_ids_are_fixed(kind: str) -> None:
    tokenizer = Seq2SeqTokenizer.train(
        SCAN_COMMANDS, SCAN_ACTIONS, kind, vocab_size=300, joint=False, min_frequency=1
    )
    for side in (tokenizer.source, tokenizer.target):
        ids = [side.token_to_id(token) for token in (PAD, UNK, BOS, EOS)]
        assert ids == [PAD_ID, UNK_ID, BOS_ID, EOS_ID] == [0, 1, 2, 3]


def test_joint_and_separate_vocabularies() -> None:
    separate = scan_word_tokenizer(joint=False)
    assert not separate.joint
    assert separate.source is not separate.target
    assert separate.source_vocab_size == 4 + len(SCAN_COMMAND_WORDS)
    assert separate.target_vocab_size == 4 + len(SCAN_ACTION_WORDS)

    joint = scan_word_tokenizer(joint=True)
    assert joint.joint
    assert joint.source is joint.target
    expected = 4 + len(SCAN_COMMAND_WORDS | SCAN_ACTION_WORDS)
    assert joint.source_vocab_size == joint.target_vocab_size == expected


def test_word_round_trip_on_scan() -> None:
    tokenizer = scan_word_tokenizer(joint=False)
    [command_ids] = tokenizer.encode_source(["jump twice after walk left"])
    [action_ids] = tokenizer.encode_target(["I_TURN_LEFT I_WALK"])
    assert len(command_ids) == 5 and len(action_ids) == 2
    assert tokenizer.decode_source(command_ids) == "jump twice after walk left"
    assert tokenizer.decode_target(action_ids) == "I_TURN_LEFT I_WALK"


def test_word_unknown_words_become_unk() -> None:
    tokenizer = scan_word_tokenizer(joint=False)
    [ids] = tokenizer.encode_source(["walk  sideways\tleft"])
    assert ids[1] == UNK_ID
    assert tokenizer.decode_source(ids) == "walk <unk> left"


def test_char_round_trip_one_token_per_character() -> None:
    transcripts = ["a dog runs", "two men's bikes"]
    tokenizer = Seq2SeqTokenizer.train(None, transcripts, "char", 100, False, min_frequency=1)
    assert tokenizer.target_vocab_size == 4 + len(set("".join(transcripts)))
    [ids] = tokenizer.encode_target(["a dog's bike"])
    assert len(ids) == len("a dog's bike")
    assert tokenizer.decode_target(ids) == "a dog's bike"
    [unseen] = tokenizer.encode_target(["a cat"])
    assert unseen[2] == UNK_ID and tokenizer.decode_target(unseen) == "a <unk>at"


def test_word_vocab_size_caps_vocabulary() -> None:
    tokenizer = train_tokenizer(SCAN_COMMANDS, "word", vocab_size=7, min_frequency=1)
    assert tokenizer.get_vocab_size() == 7


def test_decode_stops_at_eos_and_drops_pad_and_bos() -> None:
    tokenizer = scan_word_tokenizer(joint=False)
    [ids] = tokenizer.encode_target(["I_TURN_LEFT I_WALK"])
    [other] = tokenizer.encode_target(["I_JUMP"])
    generated = [BOS_ID, *ids, PAD_ID, EOS_ID, *other, EOS_ID, PAD_ID, PAD_ID]
    assert tokenizer.decode_target(generated) == "I_TURN_LEFT I_WALK"
    assert tokenizer.decode_target([BOS_ID, EOS_ID, *ids]) == ""


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="'bpe', 'word'"):
        train_tokenizer(SCAN_COMMANDS, "unigram", vocab_size=100)


@pytest.mark.parametrize("kind", ["bpe", "word"])
def test_training_is_deterministic(kind: str) -> None:
    corpus = SCAN_COMMANDS + SCAN_ACTIONS
    first = train_tokenizer(corpus, kind, vocab_size=300, min_frequency=1)
    second = train_tokenizer(corpus, kind, vocab_size=300, min_frequency=1)
    assert first.to_str() == second.to_str()


@pytest.mark.parametrize("joint", [False, True])
def test_dict_round_trip(joint: bool) -> None:
    tokenizer = scan_word_tokenizer(joint)
    state = tokenizer.to_dict()
    assert len(state) == (1 if joint else 2)
    restored = Seq2SeqTokenizer.from_dict(state)
    assert restored.joint == joint
    assert restored.to_dict() == state
    assert restored.encode_target(SCAN_ACTIONS) == tokenizer.encode_target(SCAN_ACTIONS)


@pytest.mark.parametrize("joint", [False, True])
def test_save_load_round_trip(tmp_path: Path, joint: bool) -> None:
    tokenizer = scan_word_tokenizer(joint)
    tokenizer.save(tmp_path / "tok")
    expected = ["tokenizer.json"] if joint else ["tokenizer.source.json", "tokenizer.target.json"]
    assert sorted(path.name for path in (tmp_path / "tok").iterdir()) == expected
    restored = Seq2SeqTokenizer.load(tmp_path / "tok")
    assert restored.joint == joint
    assert restored.to_dict() == tokenizer.to_dict()


def _cached(cache_dir: Path, targets: list[str] = SCAN_ACTIONS, **overrides) -> Seq2SeqTokenizer:
    settings = {"kind": "word", "vocab_size": 100, "joint": False, "min_frequency": 1}
    return load_or_train_tokenizer(cache_dir, SCAN_COMMANDS, targets, **(settings | overrides))


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(path for path in cache_dir.iterdir() if path.is_dir())


def test_cache_reuses_trained_tokenizer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _cached(tmp_path)
    [entry] = _entries(tmp_path)
    assert entry.name.startswith("tokenizer-") and len(entry.name) == len("tokenizer-") + 16

    def fail(*args, **kwargs):
        raise AssertionError("tokenizer retrained despite a cache hit")

    monkeypatch.setattr(Seq2SeqTokenizer, "train", fail)
    second = _cached(tmp_path)
    assert second.to_dict() == first.to_dict()
    assert _entries(tmp_path) == [entry]


def test_cache_key_depends_on_corpus_and_settings(tmp_path: Path) -> None:
    _cached(tmp_path)
    _cached(tmp_path, targets=[*SCAN_ACTIONS[:-1], "I_JUMP"])
    _cached(tmp_path, vocab_size=50)
    _cached(tmp_path, joint=True)
    assert len(_entries(tmp_path)) == 4


def test_parallel_cache_misses_train_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_train = Seq2SeqTokenizer.train
    calls = []

    def counting_train(*args, **kwargs) -> Seq2SeqTokenizer:
        calls.append(args)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(Seq2SeqTokenizer, "train", counting_train)
    results: list[Seq2SeqTokenizer] = []
    threads = [threading.Thread(target=lambda: results.append(_cached(tmp_path))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len({str(result.to_dict()) for result in results}) == 1


def test_sample_pairs_is_uniform_aligned_ordered_and_seeded() -> None:
    sources = [f"s{i}" for i in range(1000)]
    targets = [f"t{i}" for i in range(1000)]
    sampled, sampled_targets = sample_pairs(iter(sources), iter(targets), 100)
    assert len(sampled) == 100 and [s[1:] for s in sampled] == [t[1:] for t in sampled_targets]
    positions = [int(s[1:]) for s in sampled]
    assert positions == sorted(positions)  # corpus order
    assert 300 < sum(positions) / 100 < 700  # spread over the corpus, not its start
    assert sample_pairs(sources, targets, 100) == (sampled, sampled_targets)  # seeded
    assert sample_pairs(sources, targets, 100, seed=1) != (sampled, sampled_targets)
    assert sample_pairs(sources[:5], targets[:5], 100) == (sources[:5], targets[:5])
    assert sample_pairs(None, targets, 3)[0] is None


def test_a_sampled_tokenizer_has_its_own_cache_entry(tmp_path: Path) -> None:
    _cached(tmp_path)
    sampled = _cached(tmp_path, max_pairs=2)
    assert len(_entries(tmp_path)) == 2
    assert sampled.target_vocab_size < _cached(tmp_path).target_vocab_size
