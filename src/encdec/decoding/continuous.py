"""Greedy decoding of a continuous output (speech synthesis), through the same step interface
as token search: ``encode``, ``init_state``, then ``step`` fed its own previous frame, until each
row's stop probability passes ``stop_threshold`` or the row reaches its frame limit. There is no
beam: a frame is not chosen among alternatives.

The network gives, besides the step interface, ``n_mels``, ``frames_per_step`` (r: frames per
step), ``refine(frames, mask)`` (the post-net over whole spectrograms) and ``denormalize``.
"""

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Synthesized:
    """One row's synthesis."""

    log_mel: torch.Tensor  # (T, M) after the post-net, denormalized
    alignment: torch.Tensor | None  # (steps, S) the attention of every step, where kept
    stopped: bool  # False: the frame limit ended it, not the stop token


@torch.no_grad()
def synthesize_greedy(
    network: Any,
    src: torch.Tensor,
    src_mask: torch.Tensor,
    frame_limits: torch.Tensor,
    stop_threshold: float = 0.5,
    keep_alignment: bool = False,
) -> list[Synthesized]:
    """src (B, S), src_mask (B, S), frame_limits (B,) -> one ``Synthesized`` per row. A row
    ends with the step whose stop probability first exceeds ``stop_threshold`` (the frames of
    that step included) or at its limit (rounded up to whole steps)."""
    r, batch = network.frames_per_step, src.size(0)
    step_limits = (frame_limits + r - 1) // r  # (B,)
    memory = network.encode(src, src_mask)
    state = network.init_state(memory)
    previous = src.new_zeros(batch, network.n_mels, dtype=torch.float)  # (B, M)
    steps = torch.zeros(batch, dtype=torch.long, device=src.device)  # each row's steps
    stopped = torch.zeros(batch, dtype=torch.bool, device=src.device)
    done = torch.zeros(batch, dtype=torch.bool, device=src.device)
    groups, alignments = [], []
    context = network.returning_attention() if keep_alignment else nullcontext()
    with context:
        for _ in range(int(step_limits.max())):
            group, state, attention = network.step(previous, state, memory)
            groups.append(group.frames)  # (B, r, M)
            if keep_alignment and attention is not None:
                alignments.append(attention)  # (B, S)
            steps = torch.where(done, steps, steps + 1)
            stops = torch.sigmoid(group.stop_logit.float()) > stop_threshold
            stopped |= stops & ~done
            done |= stops | (steps >= step_limits)
            if bool(done.all()):
                break
            previous = group.frames[:, -1].float()
    frames = torch.cat(groups, dim=1)  # (B, steps x r, M)
    lengths = steps * r  # (B,)
    mask = torch.arange(frames.size(1), device=src.device)[None] < lengths[:, None]
    log_mel = network.denormalize(network.refine(frames, mask))
    alignment = torch.stack(alignments, dim=1) if alignments else None  # (B, steps, S)
    source_lengths = src_mask.sum(1)
    return [
        Synthesized(
            log_mel[row, : lengths[row]].float(),
            None if alignment is None else alignment[row, : steps[row], : source_lengths[row]],
            bool(stopped[row]),
        )
        for row in range(batch)
    ]
