"""What a speech synthesizer reads of a text: normalized characters, or espeak-ng's phonemes,
each text's symbols kept with its own text and its punctuation in place."""

import pytest

from encdec.data.text_frontends import Characters, EspeakPhonemes
from encdec.utils.errors import UserError


def test_characters_are_the_normalized_text():
    assert Characters()(["A  Dog's toy-box!", " "]) == ["a dog's toy-box!", ""]


def test_phonemes_say_each_text_with_its_punctuation_in_place():
    texts = ["A dog runs.", "", "Two men, playing soccer!", "...", "though tough"]
    said = EspeakPhonemes()(texts)
    assert len(said) == len(texts)  # every text its own line, the empty and mark-only ones too
    assert said[0] == "ɐ dˈɑːɡ ɹˈʌnz."
    assert said[1] == "" and said[3] == "..."
    assert said[2].startswith("tˈuː mˈɛn, ") and said[2].endswith("!")
    though, tough = said[4].split()  # spelled alike, said apart: what characters cannot show
    assert though[-2:] == "oʊ" and tough.endswith("ʌf")
    assert EspeakPhonemes()(texts[::-1]) == said[::-1]  # a text's phonemes are its own


def test_phonemes_without_stress_marks():
    assert "ˈ" not in EspeakPhonemes(stress=False)(["a dog runs"])[0]


def test_a_language_espeak_lacks_is_one_clear_line():
    message = r"espeak-ng cannot say 'xx-none' \(data.text_frontend.language\): .*not exist"
    with pytest.raises(UserError, match=message):
        EspeakPhonemes("xx-none")(["a dog"])


def test_phonemes_are_said_once_in_shards_and_kept_in_order():
    texts = [f"{number} dogs" for number in range(2500)]  # more runs than one shard takes
    frontend = EspeakPhonemes()
    said = frontend(texts)
    assert said[7] == EspeakPhonemes()(["7 dogs"])[0] == "sˈɛvən dˈɑːɡz"
    assert said[2499].endswith("dˈɑːɡz") and len(set(said)) == 2500
    frontend._say = None  # a text said before is not said again
    assert frontend(texts[:3]) == said[:3]
