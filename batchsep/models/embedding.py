"""Shared parts of the embedding separators of seed 004: BLSTM trunk, mask-inference head, k-means.

SCE+MI (:mod:`batchsep.models.sce`) and DC+MI (:mod:`batchsep.models.dc`) share one network (seed 004
§3.2, the Chimera layout of Luo et al. 2017): ``n_layers`` BLSTM layers read the normalised √magnitude
frame by frame; a linear layer maps each frame to ``F·D`` values ``z`` [B, T, F, D]; the embedding of a
time-frequency bin is ``e = tanh(z) / ‖tanh(z)‖`` (unit norm) and the mask-inference (MI) head is a
per-bin ``Linear(D, 2)`` on ``z`` with a softmax over (speech, noise), whose speech channel is the ratio
mask. Training minimises ``(1 − α)·embedding_loss + α·mask_loss`` (MSA or PSA on the MI mask); the
embedding loss ignores padded frames and *silent* bins (more than ``silence_db`` below the mixture's
maximum, as in deep clustering).

Inference goes through ``forward``: ``config.inference = "mi"`` returns the MI ratio mask,
``"kmeans"`` clusters the embeddings of each utterance into two groups (deterministic farthest-point
initialisation, Lloyd iterations on the non-silent bins) and returns the binary mask of the cluster the
subclass judges to be speech.

Example
-------
>>> from batchsep.models.sce import SceConfig, SceModel
>>> model = SceModel(SceConfig(n_freq=6, n_layers=1, hidden=4, embed_dim=3))
>>> model(torch.rand(2, 6, 5)).shape
torch.Size([2, 6, 5])
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from torch.nn import functional as tnf
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from batchsep.config import Config
from batchsep.dsp.masks import ibm
from batchsep.errors import ParameterError
from batchsep.models.base import MaskModel
from batchsep.models.kmeans import kmeans
from batchsep.models.losses import mask_loss

InputNorm = Literal["utterance", "rms", "max", "none"]
Inference = Literal["mi", "kmeans"]
EPS = 1e-8


def _check_int(obj: object, names: tuple[str, ...], minimum: int = 1) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ParameterError(f"{name}={value!r} must be an integer >= {minimum}")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ParameterError(f"{name}={value!r} must be one of {list(choices)}")


@dataclass(frozen=True)
class EmbeddingConfig(Config):
    """Options shared by the SCE+MI and DC+MI models (not registered itself).

    Parameters
    ----------
    n_freq : int
        Frequency bins ``F`` of the input magnitude.
    n_layers : int
        BLSTM layers (seed 004: 4).
    hidden : int
        Units per layer and direction (seed 004: 500).
    embed_dim : int
        Embedding dimension ``D`` per time-frequency bin (seed 004: 40).
    dropout : float
        Dropout between BLSTM layers.
    input_norm : {"utterance", "rms", "max", "none"}
        Normalisation of ``√|X|`` per utterance over its valid frames: zero mean and unit variance,
        unit RMS, unit maximum, or none.
    silence_db : float or None
        Bins more than this many dB below the utterance's maximum mixture magnitude are left out of the
        embedding loss and of the k-means fit; None keeps every bin.
    alpha : float
        Weight of the mask-inference loss in ``(1 − α)·embedding + α·mask`` (in [0, 1]).
    loss : {"msa", "psa"}
        Mask-inference loss (:mod:`batchsep.models.losses`).
    inference : {"mi", "kmeans"}
        What ``forward`` returns: the MI ratio mask or the k-means binary mask.
    kmeans_iter : int
        Lloyd iterations of the k-means inference.
    """

    n_freq: int = 257
    n_layers: int = 4
    hidden: int = 500
    embed_dim: int = 40
    dropout: float = 0.0
    input_norm: InputNorm = "utterance"
    silence_db: float | None = 40.0
    alpha: float = 0.5
    loss: Literal["msa", "psa"] = "msa"
    inference: Inference = "mi"
    kmeans_iter: int = 10

    def __post_init__(self) -> None:
        _check_int(self, ("n_freq", "n_layers", "hidden", "embed_dim", "kmeans_iter"))
        if not 0.0 <= self.dropout < 1.0:
            raise ParameterError(f"dropout={self.dropout!r} must be in [0, 1)")
        if not 0.0 <= self.alpha <= 1.0:
            raise ParameterError(f"alpha={self.alpha!r} must be in [0, 1]")
        if self.silence_db is not None and not 0.0 < self.silence_db < math.inf:
            raise ParameterError(f"silence_db={self.silence_db!r} must be finite and > 0 (or None)")
        _check_choice("input_norm", self.input_norm, ("utterance", "rms", "max", "none"))
        _check_choice("loss", self.loss, ("msa", "psa"))
        _check_choice("inference", self.inference, ("mi", "kmeans"))


def valid_frames(lengths: torch.Tensor | None, mag: torch.Tensor) -> torch.Tensor:
    """Boolean ``[B, T]`` mask of the valid frames of ``mag`` [B, F, T] (all True without lengths).

    Raises
    ------
    ParameterError
        If ``lengths`` is not ``(B,)`` or a length lies outside ``[1, T]``.
    """
    n_batch, n_frames = mag.shape[0], mag.shape[-1]
    t = torch.arange(n_frames, device=mag.device)
    if lengths is None:
        return (t < n_frames)[None, :].expand(n_batch, n_frames)
    lengths = torch.as_tensor(lengths)
    if lengths.shape != (n_batch,) or lengths.is_floating_point():
        raise ParameterError(
            f"lengths shape={tuple(lengths.shape)} dtype={lengths.dtype} must be integer (B,)="
            f"({n_batch},)"
        )
    if int(lengths.min()) < 1 or int(lengths.max()) > n_frames:
        raise ParameterError(f"lengths={lengths.tolist()} must lie in [1, T={n_frames}]")
    return t[None, :] < lengths.to(mag.device)[:, None]


def sqrt_features(mag: torch.Tensor, valid: torch.Tensor, *, norm: InputNorm) -> torch.Tensor:
    """``√|X|`` normalised per utterance over its valid frames; padded frames are set to 0.

    Parameters
    ----------
    mag : torch.Tensor [shape=(B, F, T)]
        Mixture magnitude.
    valid : torch.Tensor [shape=(B, T)], bool
        Valid frames (:func:`valid_frames`).
    norm : {"utterance", "rms", "max", "none"}
        Zero mean / unit variance, unit RMS, unit maximum, or no normalisation.

    Returns
    -------
    torch.Tensor [shape=(B, F, T)]
    """
    x = mag.clamp_min(0.0).sqrt()
    w = valid[:, None, :].to(x.dtype)
    n = (w.sum(dim=(1, 2)) * x.shape[1]).clamp_min(1.0)[:, None, None]
    if norm == "utterance":
        mean = (x * w).sum(dim=(1, 2), keepdim=True) / n
        var = ((x - mean) ** 2 * w).sum(dim=(1, 2), keepdim=True) / n
        x = (x - mean) / torch.sqrt(var + EPS)
    elif norm == "rms":
        x = x / torch.sqrt((x**2 * w).sum(dim=(1, 2), keepdim=True) / n + EPS)
    elif norm == "max":
        x = x / ((x * w).amax(dim=(1, 2), keepdim=True) + EPS)
    return x * w


def silence_weights(
    mag: torch.Tensor, valid: torch.Tensor, *, silence_db: float | None
) -> torch.Tensor:
    """1 for valid bins at most ``silence_db`` below the utterance's maximum ``|X|``, else 0.

    Parameters
    ----------
    mag : torch.Tensor [shape=(B, F, T)]
    valid : torch.Tensor [shape=(B, T)], bool
    silence_db : float or None
        None: every valid bin counts.

    Returns
    -------
    torch.Tensor [shape=(B, F, T)], float (0 or 1)
    """
    w = valid[:, None, :].expand_as(mag)
    if silence_db is not None:
        peak = torch.where(w, mag, torch.zeros_like(mag)).amax(dim=(1, 2), keepdim=True)
        w = w & (mag >= peak * 10.0 ** (-silence_db / 20.0))
    return w.to(mag.dtype)


def dominance_labels(batch: dict[str, Any]) -> torch.Tensor:
    """1 where speech dominates a bin (ideal binary mask, seed 004 §4), else 0.

    Uses ``noise_mag`` when the batch has it; otherwise estimates ``|N|² ≈ max(|X|² − |S|², 0)``
    (speech and noise uncorrelated) from ``noisy_mag`` and ``clean_mag``.

    Returns
    -------
    torch.Tensor [shape=(B, F, T)], float (0 or 1)
    """
    missing = [k for k in ("noisy_mag", "clean_mag") if k not in batch]
    if missing:
        raise ParameterError(f"batch keys {sorted(batch)} must include {missing}")
    clean = batch["clean_mag"]
    noise = batch.get("noise_mag")
    if noise is None:
        noise = (batch["noisy_mag"] ** 2 - clean**2).clamp_min(0.0).sqrt()
    return ibm(clean, noise)


class EmbeddingMaskModel(MaskModel):
    """BLSTM embedding trunk + mask-inference head; subclasses define the embedding loss.

    Subclasses set ``embedding_loss_name`` and implement :meth:`embedding_loss` and
    :meth:`speech_cluster`.
    """

    embedding_loss_name: ClassVar[str] = ""
    config: EmbeddingConfig

    def __init__(self, config: EmbeddingConfig) -> None:
        super().__init__(config)
        self.lstm = nn.LSTM(
            input_size=config.n_freq,
            hidden_size=config.hidden,
            num_layers=config.n_layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.n_layers > 1 else 0.0,
        )
        self.embed_layer = nn.Linear(2 * config.hidden, config.n_freq * config.embed_dim)
        self.mask_head = nn.Linear(config.embed_dim, 2)

    def parameter_count(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def embed(
        self, mag: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embeddings and MI mask of a batch of mixture magnitudes.

        Parameters
        ----------
        mag : torch.Tensor [shape=(B, F, T)]
            Mixture STFT magnitude.
        lengths : torch.Tensor [shape=(B,)], optional
            Valid frames per item (packed BLSTM: padding never changes valid outputs).

        Returns
        -------
        emb : torch.Tensor [shape=(B, T, F, D)]
            Unit-norm embeddings (time-major; padded frames are arbitrary).
        mask : torch.Tensor [shape=(B, F, T)]
            MI ratio mask in [0, 1], 0 on padded frames.
        valid : torch.Tensor [shape=(B, T)], bool

        Raises
        ------
        ParameterError
            If ``mag`` is not ``[B, F, T]`` with ``F = n_freq`` or ``lengths`` is invalid.
        """
        cfg = self.config
        if mag.ndim != 3 or mag.shape[1] != cfg.n_freq:
            raise ParameterError(f"mag shape={tuple(mag.shape)} must be [B, F={cfg.n_freq}, T]")
        n_batch, _, n_frames = mag.shape
        valid = valid_frames(lengths, mag)
        x = sqrt_features(mag, valid, norm=cfg.input_norm).transpose(1, 2)  # [B, T, F]
        if lengths is None:
            h, _ = self.lstm(x)
        else:
            lengths_cpu = valid.sum(dim=1).to("cpu", torch.int64)
            packed = pack_padded_sequence(x, lengths_cpu, batch_first=True, enforce_sorted=False)
            h_packed, _ = self.lstm(packed)
            h, _ = pad_packed_sequence(h_packed, batch_first=True, total_length=n_frames)
        z = self.embed_layer(h).view(n_batch, n_frames, cfg.n_freq, cfg.embed_dim)
        emb = tnf.normalize(torch.tanh(z), dim=-1, eps=EPS)
        mask = torch.softmax(self.mask_head(z), dim=-1)[..., 0]  # [B, T, F]
        mask = mask * valid[:, :, None].to(mask.dtype)
        return emb, mask.transpose(1, 2), valid

    def set_inference(self, mode: Inference) -> None:
        """Switch what ``forward`` returns (``"mi"`` or ``"kmeans"``); updates ``config``."""
        _check_choice("inference", mode, ("mi", "kmeans"))
        self.config = dataclasses.replace(self.config, inference=mode)

    def forward(self, mag: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Mask ``[B, F, T]``: the MI ratio mask, or the k-means binary mask (``config.inference``)."""
        if self.config.inference == "kmeans":
            return self.kmeans_mask(mag, lengths)
        return self.embed(mag, lengths)[1]

    @torch.no_grad()
    def kmeans_mask(self, mag: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Binary mask from 2-means clustering of each utterance's embeddings (seed 004 §4.2).

        Centroids are fitted on the valid non-silent bins (all valid bins of an utterance that has
        none); every valid bin joins its nearest centroid; :meth:`speech_cluster` picks the speech one.

        Parameters
        ----------
        mag : torch.Tensor [shape=(B, F, T)]
        lengths : torch.Tensor [shape=(B,)], optional

        Returns
        -------
        torch.Tensor [shape=(B, F, T)]
            Values 0 or 1 (0 on padded frames).
        """
        emb, mask, valid = self.embed(mag, lengths)
        n_batch, n_frames, n_freq, dim = emb.shape
        weights = silence_weights(mag, valid, silence_db=self.config.silence_db).transpose(1, 2)
        empty = weights.sum(dim=(1, 2)) == 0
        weights = torch.where(empty[:, None, None], valid[:, :, None].to(weights.dtype), weights)
        points = emb.reshape(n_batch, n_frames * n_freq, dim)
        assign, centroids = kmeans(
            points, weights.reshape(n_batch, -1), n_clusters=2, n_iter=self.config.kmeans_iter
        )
        assign = assign.view(n_batch, n_frames, n_freq)
        speech = self.speech_cluster(
            centroids=centroids,
            assign=assign,
            mask=mask.transpose(1, 2),
            mag=mag.transpose(1, 2),
            valid=valid,
        )
        binary = (assign == speech[:, None, None]) & valid[:, :, None]
        return binary.to(mag.dtype).transpose(1, 2)

    def speech_cluster(
        self,
        *,
        centroids: torch.Tensor,
        assign: torch.Tensor,
        mask: torch.Tensor,
        mag: torch.Tensor,
        valid: torch.Tensor,
    ) -> torch.Tensor:  # pragma: no cover - abstract
        """Index ``[B]`` of the speech cluster; inputs time-major (``assign``, ``mask``, ``mag``
        [B, T, F], ``centroids`` [B, 2, D], ``valid`` [B, T])."""
        raise NotImplementedError

    def embedding_loss(
        self,
        emb: torch.Tensor,
        labels: torch.Tensor,
        weights: torch.Tensor,
        batch: dict[str, Any],
    ) -> torch.Tensor:  # pragma: no cover - abstract
        """Embedding loss on ``emb`` [B, T, F, D], ``labels``/``weights`` [B, T, F]."""
        raise NotImplementedError

    def training_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """``(1 − α)·embedding_loss + α·mask_loss`` on a batch.

        Parameters
        ----------
        batch : dict
            ``noisy_mag``, ``clean_mag`` [B, F, T]; optional ``noise_mag`` [B, F, T] (exact
            dominance labels), ``lengths`` [B], and for PSA ``noisy_stft``/``clean_stft``.

        Returns
        -------
        (loss, logs)
            Logs hold the embedding loss (under ``embedding_loss_name``) and the mask loss
            (``"msa"`` or ``"psa"``).
        """
        labels = dominance_labels(batch)
        noisy = batch["noisy_mag"]
        emb, mask, valid = self.embed(noisy, batch.get("lengths"))
        weights = silence_weights(noisy, valid, silence_db=self.config.silence_db)
        emb_loss = self.embedding_loss(emb, labels.transpose(1, 2), weights.transpose(1, 2), batch)
        mi_loss = mask_loss(self.config.loss, mask, batch)
        alpha = self.config.alpha
        loss = (1.0 - alpha) * emb_loss + alpha * mi_loss
        logs = {
            self.embedding_loss_name: float(emb_loss.detach()),
            self.config.loss: float(mi_loss.detach()),
        }
        return loss, logs
