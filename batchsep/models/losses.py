"""Mask-training losses for enhancement models: signal approximation (MSA) and phase-sensitive (PSA).

All losses take a mask ``M`` in [0, 1] of shape ``[B, F, T]`` estimated from the mixture ``X`` and the
clean reference ``S`` and return the mean of a squared error over the *valid* time-frequency bins; frames
``t >= lengths[b]`` are padding and never count (seeds 001, 002):

- MSA: ``(M·|X| − |S|)²``
- PSA: ``(M·|X| − |S|·cos(θ_X − θ_S))²``, the target optionally truncated to ``[0, |X|]``.

:func:`mask_loss` can compress both sides to a power ``c`` first, ``((M·|X|)^c − target^c)²``: with
``c ≈ 0.3`` (Braun & Tashev, "A consolidated view of loss functions for supervised deep learning-based speech
enhancement", 2021) quiet bins — high frequencies, weak syllables, the onsets that carry intelligibility —
weigh about as much as the loud low-frequency bins that dominate the squared error of raw magnitudes.

Example
-------
>>> import torch
>>> mag = torch.ones(1, 2, 3)
>>> float(msa(torch.full((1, 2, 3), 0.5), mag, mag))
0.25
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from batchsep.errors import ParameterError

EPS = 1e-8


def frame_mask(
    lengths: torch.Tensor, n_frames: int, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """Boolean mask of the valid frames of a padded batch.

    Parameters
    ----------
    lengths : torch.Tensor [shape=(B,)], integer
        Number of valid frames of each item; ``0 <= lengths[b] <= n_frames``.
    n_frames : int
        Padded length ``T``.
    device : torch.device or str, optional
        Device of the result (default: that of ``lengths``).

    Returns
    -------
    torch.Tensor [shape=(B, T)], bool
        ``True`` where ``t < lengths[b]``.

    Raises
    ------
    ParameterError
        If ``lengths`` is not 1-D integer, or a length is negative or exceeds ``n_frames``.

    Examples
    --------
    >>> frame_mask(torch.tensor([1, 3]), 3).int().tolist()
    [[1, 0, 0], [1, 1, 1]]
    """
    lengths = torch.as_tensor(lengths)
    if lengths.ndim != 1 or lengths.is_floating_point() or lengths.is_complex():
        raise ParameterError(
            f"lengths must be a 1-D integer tensor, got shape={tuple(lengths.shape)} "
            f"dtype={lengths.dtype}"
        )
    if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > n_frames):
        raise ParameterError(f"lengths={lengths.tolist()} must lie in [0, n_frames={n_frames}]")
    device = lengths.device if device is None else device
    t = torch.arange(n_frames, device=device)
    return t[None, :] < lengths.to(device)[:, None]


def _masked_mean(err: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``err`` [B, F, T] (or [..., F, T] without lengths) over valid bins."""
    if lengths is None:
        return err.mean()
    if err.ndim != 3:
        raise ParameterError(
            f"with lengths, inputs must be [B, F, T]; got shape={tuple(err.shape)}"
        )
    lengths = torch.as_tensor(lengths)
    if lengths.shape != (err.shape[0],):
        raise ParameterError(f"lengths shape={tuple(lengths.shape)} must be (B,)=({err.shape[0]},)")
    valid = frame_mask(lengths, err.shape[-1], device=err.device)  # [B, T]
    n_valid = int(lengths.sum()) * err.shape[-2]
    if n_valid == 0:
        raise ParameterError(f"lengths={lengths.tolist()} leave no valid frame to average")
    weights = valid[:, None, :].to(err.dtype)
    return (err * weights).sum() / n_valid


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ParameterError(f"inputs must share one shape, got {shapes}")


def msa(
    mask: torch.Tensor,
    noisy_mag: torch.Tensor,
    clean_mag: torch.Tensor,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Magnitude spectrum approximation loss, mean of ``(mask·|X| − |S|)²`` over valid bins.

    Parameters
    ----------
    mask : torch.Tensor [shape=(B, F, T)]
        Estimated mask.
    noisy_mag : torch.Tensor [shape=(B, F, T)]
        Mixture magnitude ``|X|``.
    clean_mag : torch.Tensor [shape=(B, F, T)]
        Clean speech magnitude ``|S|``.
    lengths : torch.Tensor [shape=(B,)], optional
        Valid frames per item; later frames are padding and ignored. Without it every bin counts
        (then any shape ``(..., F, T)`` is accepted).

    Returns
    -------
    torch.Tensor [shape=()]
        The loss (differentiable with respect to ``mask``).

    Raises
    ------
    ParameterError
        On mismatched shapes or invalid ``lengths``.
    """
    _check_same_shape(mask=mask, noisy_mag=noisy_mag, clean_mag=clean_mag)
    err = (mask * noisy_mag - clean_mag) ** 2
    return _masked_mean(err, lengths)


def psa_target(
    noisy_stft: torch.Tensor, clean_stft: torch.Tensor, *, truncate: bool = True
) -> torch.Tensor:
    """Phase-sensitive target ``|S|·cos(θ_X − θ_S) = Re(S·X*) / |X|``, optionally clipped to [0, |X|].

    Parameters
    ----------
    noisy_stft, clean_stft : torch.Tensor [shape=(..., F, T)], complex
        Mixture and clean STFTs.
    truncate : bool
        Clip the target to ``[0, |X|]`` (equivalently the phase-sensitive mask to [0, 1]).

    Returns
    -------
    torch.Tensor [shape=(..., F, T)], real
    """
    _check_same_shape(noisy_stft=noisy_stft, clean_stft=clean_stft)
    if not (noisy_stft.is_complex() and clean_stft.is_complex()):
        raise ParameterError(
            f"noisy_stft dtype={noisy_stft.dtype} and clean_stft dtype={clean_stft.dtype} "
            "must be complex"
        )
    noisy_mag = noisy_stft.abs()
    target = (clean_stft * noisy_stft.conj()).real / noisy_mag.clamp_min(EPS)
    if truncate:
        target = torch.minimum(target.clamp_min(0.0), noisy_mag)
    return target


def psa(
    mask: torch.Tensor,
    noisy_stft: torch.Tensor,
    clean_stft: torch.Tensor,
    lengths: torch.Tensor | None = None,
    *,
    truncate: bool = True,
) -> torch.Tensor:
    """Phase-sensitive spectrum approximation loss, mean of ``(mask·|X| − |S|cos(θ_X−θ_S))²``.

    Parameters
    ----------
    mask : torch.Tensor [shape=(B, F, T)]
        Estimated (real) mask.
    noisy_stft, clean_stft : torch.Tensor [shape=(B, F, T)], complex
        Mixture STFT ``X`` and clean STFT ``S``.
    lengths : torch.Tensor [shape=(B,)], optional
        Valid frames per item; later frames are padding and ignored.
    truncate : bool
        Truncate the target to ``[0, |X|]`` (default, as in seed 002).

    Returns
    -------
    torch.Tensor [shape=()]

    Raises
    ------
    ParameterError
        On mismatched shapes, non-complex STFTs or invalid ``lengths``.
    """
    _check_same_shape(mask=mask, noisy_stft=noisy_stft, clean_stft=clean_stft)
    target = psa_target(noisy_stft, clean_stft, truncate=truncate)
    err = (mask * noisy_stft.abs() - target) ** 2
    return _masked_mean(err, lengths)


def _stft_psa_target(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return psa_target(batch["noisy_stft"], batch["clean_stft"])


_TARGETS: dict[str, tuple[tuple[tuple[str, ...], Callable[..., torch.Tensor]], ...]] = {
    "msa": ((("clean_mag",), lambda b: b["clean_mag"]),),
    "psa": (
        (("psa_target",), lambda b: b["psa_target"]),  # stored by the features stage (--psa)
        (("noisy_stft", "clean_stft"), _stft_psa_target),
    ),
}

MASK_LOSSES = tuple(_TARGETS)
"""Names accepted by :func:`mask_loss` and :func:`loss_target`."""


def loss_target(name: str, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The magnitude that ``M·|X|`` approximates under loss ``name``, from a training batch.

    ``"msa"``: ``clean_mag``. ``"psa"``: ``psa_target`` when the batch has it (features computed
    with ``psa_target=True``; truncated to ``[0, |X|]``), else :func:`psa_target` of ``noisy_stft``
    and ``clean_stft``.

    Raises
    ------
    ParameterError
        If ``name`` is unknown or the batch has none of the keys the loss can use.
    """
    if name not in _TARGETS:
        raise ParameterError(f"loss={name!r} must be one of {list(MASK_LOSSES)}")
    for keys, target in _TARGETS[name]:
        if all(k in batch for k in keys):
            return target(batch)
    wanted = " or ".join(repr(list(keys)) for keys, _ in _TARGETS[name])
    raise ParameterError(f"loss={name!r} needs batch keys {wanted}; the batch has {sorted(batch)}")


def mask_loss(
    name: str, mask: torch.Tensor, batch: Mapping[str, torch.Tensor], *, power: float = 1.0
) -> torch.Tensor:
    """Loss ``name`` ("msa" or "psa") of ``mask`` against the tensors of a training batch:
    the mean over valid bins of ``((mask·noisy_mag)^power − loss_target(name, batch)^power)²``.

    Parameters
    ----------
    name : {"msa", "psa"}
    mask : torch.Tensor [shape=(B, F, T)]
    batch : mapping
        ``noisy_mag`` and the keys :func:`loss_target` reads; ``lengths`` when present.
    power : float
        Compression of both magnitudes, in (0, 1]; 1 (default) is the seeds' loss. Both sides get
        ``+1e-8`` before the power (finite gradients at zero). The targets are non-negative (MSA's
        ``|S|``, the truncated PSA target); a negative one counts as 0 when compressed.

    Raises
    ------
    ParameterError
        If ``name`` is unknown or the batch lacks a key the loss needs.
    """
    target = loss_target(name, batch)
    if "noisy_mag" in batch:
        noisy_mag = batch["noisy_mag"]
    elif "noisy_stft" in batch:
        noisy_mag = batch["noisy_stft"].abs()
    else:
        raise ParameterError(f"loss={name!r} needs batch key 'noisy_mag' (or 'noisy_stft')")
    if power == 1.0:
        return msa(mask, noisy_mag, target, batch.get("lengths"))
    if not 0.0 < power <= 1.0:
        raise ParameterError(f"power={power!r} must be in (0, 1]")
    _check_same_shape(mask=mask, noisy_mag=noisy_mag, target=target)
    est = (mask * noisy_mag).clamp_min(0.0) + EPS
    err = (est**power - (target.clamp_min(0.0) + EPS) ** power) ** 2
    return _masked_mean(err, batch.get("lengths"))
