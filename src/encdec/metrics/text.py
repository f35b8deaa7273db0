"""torchmetrics Metrics for sequence generation; both sync correctly under DDP.

- ``TeacherForcedMetrics``: label-smoothed loss, perplexity exp(mean token NLL) and token
  accuracy over non-pad target tokens (EOS included) — one definition for every family.
- ``TextMetrics``: sacreBLEU (13a tokenization, cased, on detokenized text), chrF and exact match
  over decoded strings. Strings are kept as byte tensors so that torchmetrics can gather them.
"""

import sacrebleu
import torch
from torchmetrics import Metric


class TeacherForcedMetrics(Metric):
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("loss_sum", "nll_sum", "correct", "tokens"):
            self.add_state(
                name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
            )

    def update(
        self, logits: torch.Tensor, target: torch.Tensor, loss_sum: torch.Tensor, pad_id: int
    ) -> None:
        # logits: (B, T, V), target: (B, T); loss_sum: summed training loss of these tokens
        real = target != pad_id
        nll = torch.nn.functional.cross_entropy(
            logits.float().flatten(0, 1), target.flatten(), ignore_index=pad_id, reduction="sum"
        )
        self.loss_sum += loss_sum.detach().double()
        self.nll_sum += nll.detach().double()
        self.correct += ((logits.argmax(-1) == target) & real).sum().double()
        self.tokens += real.sum().double()

    def compute(self) -> dict[str, torch.Tensor]:
        tokens = self.tokens.clamp(min=1)
        return {
            "loss": (self.loss_sum / tokens).float(),
            "ppl": torch.exp(self.nll_sum / tokens).float(),
            "token_accuracy": (self.correct / tokens).float(),
        }


SEPARATOR = 0xFF  # a byte that never occurs in UTF-8 text ends each string


def _to_bytes(text: str) -> torch.Tensor:
    return torch.tensor([*text.encode("utf-8"), SEPARATOR], dtype=torch.uint8)


def _to_texts(state: list[torch.Tensor] | torch.Tensor) -> list[str]:
    # before a sync the state is a list of tensors; after it, one concatenated tensor
    data = torch.cat(state) if isinstance(state, list) else state
    if data.numel() == 0:
        return []
    return [part.decode("utf-8") for part in bytes(data.tolist()).split(bytes([SEPARATOR]))[:-1]]


class TextMetrics(Metric):
    """Corpus sacreBLEU, chrF and exact match of hypotheses against one reference each."""

    full_state_update = False
    names = ("bleu", "chrf", "exact_match")  # what compute() returns
    higher_is_better = True

    def __init__(self) -> None:
        super().__init__()
        self.add_state("hypotheses", default=[], dist_reduce_fx="cat")
        self.add_state("references", default=[], dist_reduce_fx="cat")
        self.signature = ""  # sacreBLEU's signature, set by compute()

    def update(self, hypotheses: list[str], references: list[str]) -> None:
        if len(hypotheses) != len(references):
            raise ValueError(f"{len(hypotheses)} hypotheses for {len(references)} references")
        self.hypotheses.extend(_to_bytes(h) for h in hypotheses)
        self.references.extend(_to_bytes(r) for r in references)

    def texts(self) -> tuple[list[str], list[str]]:
        """(hypotheses, references) from every process (after sync)."""
        return _to_texts(self.hypotheses), _to_texts(self.references)

    def compute(self) -> dict[str, torch.Tensor]:
        hypotheses, references = self.texts()
        if not hypotheses:
            raise ValueError("no decoded sentences to score")
        bleu_metric = sacrebleu.BLEU()  # 13a tokenization, cased, on detokenized text
        bleu = bleu_metric.corpus_score(hypotheses, [references])
        self.signature = str(bleu_metric.get_signature())
        chrf = sacrebleu.CHRF().corpus_score(hypotheses, [references])
        exact = sum(h == r for h, r in zip(hypotheses, references, strict=True)) / len(references)
        return {
            "bleu": torch.tensor(bleu.score),
            "chrf": torch.tensor(chrf.score),
            "exact_match": torch.tensor(100.0 * exact),
        }
