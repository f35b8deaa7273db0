"""CTC greedy decoding (best path): the most probable label of each frame, repeats merged,
blanks dropped. What a CTC-only model decodes with; its score is the path's log-probability."""

import torch


def ctc_best_path(
    log_probs: torch.Tensor, lengths: torch.Tensor, blank_id: int
) -> list[tuple[list[int], float]]:
    """(tokens, log-probability of the best path) per row of ``log_probs`` (B, S, V), each
    over its first ``lengths`` (B,) frames."""
    best_scores, best = log_probs.max(dim=-1)  # (B, S)
    outputs = []
    for row, frames in enumerate(lengths.tolist()):
        path = best[row, :frames].tolist()
        tokens = [
            label
            for t, label in enumerate(path)
            if label != blank_id and (t == 0 or label != path[t - 1])
        ]
        outputs.append((tokens, float(best_scores[row, :frames].sum())))
    return outputs
