"""``compile=true``: the training forward runs through torch.compile and computes what the eager
forward computes; validation and search stay eager."""

import pytest
import torch

from tests.conftest import TINY_MODELS, random_batch


@pytest.mark.slow
def test_compiled_training_forward_equals_eager():
    torch.manual_seed(0)
    model = TINY_MODELS["transformer-prenorm"]().eval()  # eval: no dropout, comparable outputs
    eager_forward = model.training_forward
    model.compile_training()
    assert model.training_forward is not eager_forward
    for seed, (src_len, tgt_len) in enumerate([(7, 5), (9, 6)]):  # two shapes: dynamic
        src, src_mask = random_batch(src_len=src_len, seed=seed)
        tgt_in = torch.randint(4, 24, (src.size(0), tgt_len))
        compiled = model.training_forward(src, src_mask, tgt_in)  # TeacherForced
        expected = model(src, src_mask, tgt_in)
        torch.testing.assert_close(compiled.logits, expected, atol=1e-5, rtol=1e-4)
        assert compiled.attention is None  # the Transformer keeps no attention in training
        assert compiled.ctc_log_probs is None  # no CTC head
