"""The CTC prefix score (Watanabe et al. 2017, Algorithm 2): the probability, under a CTC
model's frame posteriors, that the output *starts with* a prefix, extended one token at a time
alongside the attention decoder's beam. Joint CTC/attention decoding adds its increment
``log psi(h + c) - log psi(h)``, weighted, to each candidate's score; for ``</s>`` the
increment is that of the whole output being exactly ``h``.

State per hypothesis h (all in log space), over an utterance's T frames:
``r[t, 0]`` = P(h emitted by frame t, the last frame on its last token),
``r[t, 1]`` = P(h emitted by frame t, the last frame on blank), and ``log_psi`` = log P(prefix h).
A step scores M candidate tokens per hypothesis at once (the pre-beam), looping over frames.
"""

from dataclasses import dataclass
from typing import Self

import torch

NEG_INF = float("-inf")


@dataclass
class CTCPrefixState:
    utterance: torch.Tensor  # (N,) the row of the CTC posteriors each hypothesis reads
    r: torch.Tensor  # (N, T, 2): [ends on its last token, ends on blank] per frame
    log_psi: torch.Tensor  # (N,)
    last: torch.Tensor  # (N,) the prefix's last token; -1 for the empty prefix

    def reorder(self, index: torch.Tensor) -> Self:
        return CTCPrefixState(
            self.utterance[index], self.r[index], self.log_psi[index], self.last[index]
        )


@dataclass
class CTCCandidates:
    """What ``CTCPrefixScorer.score`` computed for M candidates of N hypotheses."""

    tokens: torch.Tensor  # (N, M)
    r: torch.Tensor  # (N, T, 2, M)
    log_psi: torch.Tensor  # (N, M)
    utterance: torch.Tensor  # (N,)


class CTCPrefixScorer:
    """Over CTC log-posteriors (B, T, V) with each utterance's frame count (B,)."""

    def __init__(
        self, log_probs: torch.Tensor, lengths: torch.Tensor, blank_id: int, eos_id: int
    ) -> None:
        self.log_probs = log_probs.float()  # (B, T, V)
        self.lengths = lengths  # (B,)
        self.blank_id, self.eos_id = blank_id, eos_id

    def init_state(self) -> CTCPrefixState:
        """The empty prefix of every utterance: all frames blank so far."""
        batch, frames, _ = self.log_probs.shape
        blank = self.log_probs[:, :, self.blank_id]  # (B, T)
        r = torch.full((batch, frames, 2), NEG_INF, device=blank.device)
        r[:, :, 1] = blank.cumsum(1)
        zeros = torch.zeros(batch, device=blank.device)
        last = torch.full((batch,), -1, dtype=torch.long, device=blank.device)
        return CTCPrefixState(torch.arange(batch, device=blank.device), r, zeros, last)

    def score(
        self, state: CTCPrefixState, tokens: torch.Tensor
    ) -> tuple[torch.Tensor, CTCCandidates]:
        """Score increments (N, M) of extending each hypothesis with each of ``tokens`` (N, M),
        and the candidates' states (``select`` keeps the chosen ones)."""
        x = self.log_probs[state.utterance]  # (N, T, V)
        count, frames, _ = x.shape
        lengths = self.lengths[state.utterance]  # (N,)
        x_token = x.gather(2, tokens.unsqueeze(1).expand(-1, frames, -1))  # (N, T, M)
        x_blank = x[:, :, self.blank_id].unsqueeze(2)  # (N, T, 1)
        # phi[t]: P(h by frame t) such that c can follow at t + 1 (after a blank if c repeats
        # h's last token)
        either = torch.logaddexp(state.r[:, :, 0], state.r[:, :, 1]).unsqueeze(2)  # (N, T, 1)
        repeats = (tokens == state.last.unsqueeze(1)).unsqueeze(1)  # (N, 1, M)
        phi = torch.where(repeats, state.r[:, :, 1:2], either)  # (N, T, M)
        r = torch.full((count, frames, 2, tokens.size(1)), NEG_INF, device=x.device)
        empty = (state.last == -1).view(-1, 1)  # (N, 1)
        r[:, 0, 0] = torch.where(empty, x_token[:, 0], NEG_INF)
        log_psi = r[:, 0, 0].clone()  # (N, M)
        for t in range(1, frames):
            inside = (t < lengths).view(-1, 1)  # (N, 1): frames past an utterance change nothing
            ends_on_token = torch.logaddexp(r[:, t - 1, 0], phi[:, t - 1]) + x_token[:, t]
            ends_on_blank = torch.logaddexp(r[:, t - 1, 0], r[:, t - 1, 1]) + x_blank[:, t]
            r[:, t, 0] = torch.where(inside, ends_on_token, r[:, t - 1, 0])
            r[:, t, 1] = torch.where(inside, ends_on_blank, r[:, t - 1, 1])
            log_psi = torch.where(
                inside, torch.logaddexp(log_psi, phi[:, t - 1] + x_token[:, t]), log_psi
            )
        final = (lengths - 1).view(-1, 1)  # (N, 1)
        whole = either.squeeze(2).gather(1, final)  # (N, 1): P(the output is exactly h)
        log_psi = torch.where(tokens == self.eos_id, whole, log_psi)
        log_psi = torch.where(tokens == self.blank_id, NEG_INF, log_psi)
        before = state.log_psi.unsqueeze(1)  # (N, 1); -inf: an impossible prefix stays so
        increments = torch.where(before == NEG_INF, NEG_INF, log_psi - before)
        return increments, CTCCandidates(tokens, r, log_psi, state.utterance)

    @staticmethod
    def select(
        candidates: CTCCandidates, rows: torch.Tensor, columns: torch.Tensor
    ) -> CTCPrefixState:
        """The states of candidate ``columns[i]`` of hypothesis ``rows[i]``."""
        return CTCPrefixState(
            candidates.utterance[rows],
            candidates.r[rows, :, :, columns],
            candidates.log_psi[rows, columns],
            candidates.tokens[rows, columns],
        )
