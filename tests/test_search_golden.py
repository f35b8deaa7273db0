"""Golden values of search: the token ids and scores that greedy and beam-5 search give for each
tiny fixed-seed model of ``conftest.TINY_MODELS`` on a fixed batch. Written once from the code
as it was (``ENCDEC_WRITE_GOLDEN=1 pytest tests/test_search_golden.py``) and kept unchanged:
a refactor of the networks or the search that changes any output fails here."""

import json
import os
from pathlib import Path

import pytest
import torch

from encdec.decoding.search import DecodingConfig
from tests.conftest import TINY_MODELS, random_batch

GOLDEN = Path(__file__).parent / "golden" / "search.json"
SEARCHES = {
    "greedy": DecodingConfig(beam_size=1, max_len_a=1.0, max_len_b=4),
    "beam5": DecodingConfig(beam_size=5, n_best=2, length_penalty=0.6, max_len_a=1.0, max_len_b=4),
}


def search_outputs(name: str) -> dict[str, list[list[dict[str, object]]]]:
    torch.manual_seed(0)
    model = TINY_MODELS[name]().net.eval()
    src, mask = random_batch(batch=5, seed=3)
    with torch.no_grad():
        return {
            search: [
                [{"tokens": h.tokens, "score": h.score, "finished": h.finished} for h in nbest]
                for nbest in model.generate(src, mask, decoding)
            ]
            for search, decoding in SEARCHES.items()
        }


def test_golden_file_covers_every_tiny_model():
    if os.environ.get("ENCDEC_WRITE_GOLDEN") == "1":
        outputs = {name: search_outputs(name) for name in sorted(TINY_MODELS)}
        GOLDEN.write_text(json.dumps(outputs, indent=1) + "\n")
    assert sorted(json.loads(GOLDEN.read_text())) == sorted(TINY_MODELS)


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_search_gives_the_golden_tokens_and_scores(name):
    golden = json.loads(GOLDEN.read_text())[name]
    outputs = search_outputs(name)
    for search in SEARCHES:
        for row, (got, expected) in enumerate(zip(outputs[search], golden[search], strict=True)):
            assert [h["tokens"] for h in got] == [h["tokens"] for h in expected], (search, row)
            assert [h["finished"] for h in got] == [h["finished"] for h in expected]
            for h, g in zip(got, expected, strict=True):
                assert h["score"] == pytest.approx(g["score"], abs=1e-5), (search, row)
