"""Training batches of an :class:`~batchsep.training.data.emotion.EmotionCorpus`: :class:`EmotionBatches`
turns a split into ``{"logmel": float32 [B, n_mels, n_frames], "label": int64 [B]}`` with two
speaker-level augmentations (a random position of the utterance in the window, and a small shift along
the mel axis, :func:`shift_mels`) and a deterministic per-``(seed, epoch)`` order; each DDP rank gets a
disjoint share with the same number of batches."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from batchsep.errors import ParameterError
from batchsep.training.data.emotion import EmotionCorpus, finish


def shift_mels(m: np.ndarray, k: int) -> np.ndarray:
    """Shift a ``[n_mels, T]`` spectrogram by ``k`` mel bands (up for k > 0), repeating the edge band."""
    if k == 0:
        return m
    idx = np.clip(np.arange(m.shape[0]) - k, 0, m.shape[0] - 1)
    return m[idx]


class EmotionBatches:
    """Training (or evaluation) batches of an :class:`EmotionCorpus`; ``batches(epoch)`` is iterable.

    Parameters
    ----------
    corpus : EmotionCorpus
    batch_size : int
    shuffle : bool
        Permute items each epoch (from ``seed`` and the epoch), and drop each rank's incomplete batch.
    augment : bool
        Random position in the window (``fix_frames(mode="random")``) and a mel shift drawn from
        ``[-max_mel_shift, max_mel_shift]``; otherwise centred and unshifted (the tagger's features).
    rank, world_size : int
        DDP share: rank ``r`` takes items ``r, r + world_size, …`` of the epoch's order, truncated so
        that every rank yields the same number of batches.
    """

    def __init__(
        self,
        corpus: EmotionCorpus,
        *,
        batch_size: int = 32,
        shuffle: bool = True,
        augment: bool = True,
        max_mel_shift: int = 3,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1 or max_mel_shift < 0:
            raise ParameterError(
                f"batch_size={batch_size} must be >= 1 and max_mel_shift={max_mel_shift} >= 0"
            )
        if not 0 <= rank < world_size:
            raise ParameterError(f"rank={rank} must be in [0, world_size={world_size})")
        if len(corpus) < world_size:
            raise ParameterError(f"{len(corpus)} items cannot feed world_size={world_size} ranks")
        self.corpus, self.batch_size, self.shuffle, self.augment = (
            corpus,
            batch_size,
            shuffle,
            augment,
        )
        self.max_mel_shift, self.seed, self.rank, self.world_size = (
            max_mel_shift,
            seed,
            rank,
            world_size,
        )
        self._fixed = None if augment else corpus.features()

    def __len__(self) -> int:
        per_rank = len(self.corpus) // self.world_size
        full, rest = divmod(per_rank, self.batch_size)
        return full if (self.shuffle and full) else full + (rest > 0)

    def __call__(self, epoch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        return self.batches(epoch)

    def batches(self, epoch: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Yield ``len(self)`` batches ``{"logmel": [B, n_mels, n_frames], "label": [B]}``."""
        n = len(self.corpus)
        rng = np.random.default_rng([self.seed, epoch, 1234])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        per_rank = n // self.world_size
        mine = order[self.rank :: self.world_size][:per_rank]
        item_rng = np.random.default_rng([self.seed, epoch, self.rank, 99])
        for b in range(len(self)):
            idx = mine[b * self.batch_size : (b + 1) * self.batch_size]
            if self._fixed is not None:
                x = self._fixed[idx]
            else:
                x = np.stack([self._augmented(int(i), item_rng) for i in idx])
            yield {
                "logmel": torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                "label": torch.from_numpy(self.corpus.labels[idx].copy()),
            }

    def _augmented(self, i: int, rng: np.random.Generator) -> np.ndarray:
        m = self.corpus.mels[i]
        k = int(rng.integers(-self.max_mel_shift, self.max_mel_shift + 1))
        return finish(shift_mels(m, k), self.corpus.config, mode="random", rng=rng)
