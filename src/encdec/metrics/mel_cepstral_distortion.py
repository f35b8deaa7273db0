"""Mel-cepstral distortion (MCD, Kubichek 1993) between synthesized and reference speech, frames
aligned by dynamic time warping (MCD-DTW): speech synthesis's distance to the reference.

The cepstra are those of the mel spectrogram every model here reads and writes
(``LogMelSpectrogram``: 80 HTK bins, 25 ms / 10 ms): the DCT-II (orthonormal) of the log
*amplitude* mel spectrum (half the log power), coefficients 1..24 (c0, the energy, is left out,
so loudness does not count). DTW aligns the two sequences by the Euclidean distance of their
cepstra (steps (1,0), (0,1), (1,1)); the MCD of an utterance is the mean over the path's pairs of
(10 / ln 10) sqrt(2 sum_d (c_d - c'_d)^2) dB, and the corpus figure the mean over utterances.
This is not SPTK's mel-cepstrum of a WORLD spectral envelope (what ESPnet reports): figures are
comparable among models scored here, not with papers'.
"""

import math

import numpy as np
import torch
from scipy.fft import dct
from torchmetrics import Metric

COEFFICIENTS = 24
DB_FACTOR = 10.0 / math.log(10.0) * math.sqrt(2.0)


def mel_cepstrum(log_mel: np.ndarray, coefficients: int = COEFFICIENTS) -> np.ndarray:
    """(T, M) log-power mel spectrogram -> (T, coefficients) cepstra c1..c_n."""
    cepstra = dct(0.5 * log_mel.astype(np.float64), type=2, norm="ortho", axis=1)
    return cepstra[:, 1 : coefficients + 1]


def dtw_path(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The minimum-cost monotonic path through ``distances`` (N, K) from (0, 0) to
    (N-1, K-1) with steps (1,0), (0,1), (1,1): its rows and columns. The cost matrix is filled
    one anti-diagonal at a time (each cell needs only the two diagonals before it)."""
    rows, columns = distances.shape
    cost = np.full((rows + 1, columns + 1), np.inf)
    cost[0, 0] = 0.0
    for diagonal in range(2, rows + columns + 1):  # i + j = diagonal, 1-based cells
        i = np.arange(max(1, diagonal - columns), min(rows, diagonal - 1) + 1)
        j = diagonal - i
        best = np.minimum(np.minimum(cost[i - 1, j - 1], cost[i - 1, j]), cost[i, j - 1])
        cost[i, j] = distances[i - 1, j - 1] + best
    path_i, path_j = [rows], [columns]
    i, j = rows, columns
    while (i, j) != (1, 1):
        moves = ((i - 1, j - 1), (i - 1, j), (i, j - 1))
        i, j = min(moves, key=lambda m: cost[m])
        path_i.append(i)
        path_j.append(j)
    return np.array(path_i[::-1]) - 1, np.array(path_j[::-1]) - 1


def mel_cepstral_distortion(synthesized: np.ndarray, reference: np.ndarray) -> float:
    """MCD-DTW in dB between two log-mel spectrograms (T1, M) and (T2, M)."""
    a, b = mel_cepstrum(synthesized), mel_cepstrum(reference)
    differences = a[:, None, :] - b[None, :, :]  # (T1, T2, D)
    distances = np.sqrt((differences**2).sum(-1))
    path_a, path_b = dtw_path(distances)
    return float(DB_FACTOR * distances[path_a, path_b].mean())


class MelCepstralDistortion(Metric):
    """Corpus MCD-DTW (dB, mean over utterances) and the mean ratio of synthesized to
    reference length; sums synced under DDP."""

    full_state_update = False
    higher_is_better = False  # the best checkpoint has the lowest MCD
    names = ("mcd",)  # shown and monitored; compute() also gives the length ratio
    signature = (
        f"MCD-DTW (dB) over mel-cepstra c1..c{COEFFICIENTS} of the 80-bin log-mel "
        "(25 ms / 10 ms), mean over utterances"
    )

    def __init__(self) -> None:
        super().__init__()
        self.add_state("distortion", torch.tensor(0.0, dtype=torch.float64), "sum")
        self.add_state("length_ratio", torch.tensor(0.0, dtype=torch.float64), "sum")
        self.add_state("utterances", torch.tensor(0, dtype=torch.long), "sum")

    def update(self, synthesized: list[torch.Tensor], references: list[torch.Tensor]) -> None:
        """Log-mel spectrograms (T, M), one synthesized per reference."""
        if len(synthesized) != len(references):
            raise ValueError(f"{len(synthesized)} spectrograms for {len(references)} references")
        for ours, theirs in zip(synthesized, references, strict=True):
            ours_np, theirs_np = ours.float().cpu().numpy(), theirs.float().cpu().numpy()
            self.distortion += mel_cepstral_distortion(ours_np, theirs_np)
            self.length_ratio += len(ours_np) / len(theirs_np)
        self.utterances += len(references)

    def compute(self) -> dict[str, torch.Tensor]:
        if not self.utterances:
            raise ValueError("no spectrograms to score")
        return {
            "mcd": (self.distortion / self.utterances).float(),
            "length_ratio": (self.length_ratio / self.utterances).float(),
        }
