"""MSA / PSA losses: hand-computed values, padding invariance, truncation, errors."""

from __future__ import annotations

import math

import pytest
import torch

from batchsep.dsp.masks import psf
from batchsep.errors import ParameterError
from batchsep.models.losses import frame_mask, loss_target, mask_loss, msa, psa, psa_target


def test_frame_mask_values() -> None:
    m = frame_mask(torch.tensor([0, 2, 4]), 4)
    assert m.dtype == torch.bool
    assert m.int().tolist() == [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]


@pytest.mark.parametrize("lengths", [[-1, 2], [5, 2], [[1, 2]], [1.0, 2.0]])
def test_frame_mask_rejects_bad_lengths(lengths: list) -> None:
    with pytest.raises(ParameterError, match="lengths"):
        frame_mask(torch.tensor(lengths), 4)


def test_msa_hand_value() -> None:
    mask = torch.tensor([[[0.5, 1.0]]])
    noisy = torch.tensor([[[2.0, 4.0]]])
    clean = torch.tensor([[[1.0, 1.0]]])
    # (0.5*2 - 1)^2 = 0, (1*4 - 1)^2 = 9 -> mean 4.5
    assert float(msa(mask, noisy, clean)) == pytest.approx(4.5)


def test_msa_with_lengths_hand_value() -> None:
    # B=2, F=2, T=3; item 0 has 1 valid frame, item 1 has 2.
    mask = torch.ones(2, 2, 3)
    clean = torch.zeros(2, 2, 3)
    noisy = torch.tensor(
        [
            [[1.0, 100.0, 100.0], [2.0, 100.0, 100.0]],
            [[3.0, 1.0, 100.0], [0.0, 2.0, 100.0]],
        ]
    )
    # valid squared errors: 1, 4 | 9, 1, 0, 4 -> 19 / 6
    assert float(msa(mask, noisy, clean, torch.tensor([1, 2]))) == pytest.approx(19 / 6)


def test_msa_padding_invariance_and_zero_gradient_on_padding() -> None:
    g = torch.Generator().manual_seed(0)
    b, f, t = 3, 5, 7
    lengths = torch.tensor([7, 3, 5])
    mask = torch.rand(b, f, t, generator=g, requires_grad=True)
    noisy = torch.rand(b, f, t, generator=g) * 3
    clean = torch.rand(b, f, t, generator=g)
    loss_t = msa(mask, noisy, clean, lengths)
    loss_t.backward()
    loss = loss_t.detach()
    assert mask.grad is not None
    valid = frame_mask(lengths, t)[:, None, :].expand(b, f, t)
    assert torch.all(mask.grad[~valid] == 0)
    assert torch.any(mask.grad[valid] != 0)
    # garbage in the padding and extra padded frames change nothing
    noisy2, clean2 = noisy.clone(), clean.clone()
    noisy2[~valid] = 1e3
    clean2[~valid] = -7.0
    pad = torch.full((b, f, 4), 5.0)
    loss2 = msa(
        torch.cat([mask.detach(), pad], -1),
        torch.cat([noisy2, pad], -1),
        torch.cat([clean2, -pad], -1),
        lengths,
    )
    assert float(loss2) == pytest.approx(float(loss), rel=1e-6)
    # equals the mean over all items' valid bins computed item by item
    per_item = [
        ((mask.detach()[i, :, :n] * noisy[i, :, :n] - clean[i, :, :n]) ** 2)
        for i, n in enumerate(lengths.tolist())
    ]
    expected = sum(float(e.sum()) for e in per_item) / (f * int(lengths.sum()))
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def _c(mag: float, angle: float) -> torch.Tensor:
    return torch.polar(torch.tensor([[[float(mag)]]]), torch.tensor([[[float(angle)]]]))


def test_psa_hand_values_and_truncation() -> None:
    # X = 2 (phase 0), S = 1∠60° -> target |S|cos(60°) = 0.5; mask 0.5 -> (1 - 0.5)^2
    assert float(psa(torch.full((1, 1, 1), 0.5), _c(2, 0), _c(1, math.pi / 3))) == pytest.approx(
        0.25
    )
    # opposite phase: target -1 truncated to 0
    m = torch.full((1, 1, 1), 0.25)
    assert float(psa(m, _c(1, 0), _c(1, math.pi))) == pytest.approx(0.0625)
    assert float(psa(m, _c(1, 0), _c(1, math.pi), truncate=False)) == pytest.approx(1.5625)
    # target 3 > |X| = 1 truncated to 1
    one = torch.ones(1, 1, 1)
    assert float(psa(one, _c(1, 0.3), _c(3, 0.3))) == pytest.approx(0.0, abs=1e-10)
    assert float(psa(one, _c(1, 0.3), _c(3, 0.3), truncate=False)) == pytest.approx(4.0)


def test_psa_equals_msa_when_in_phase() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.complex(torch.randn(2, 4, 6, generator=g), torch.randn(2, 4, 6, generator=g))
    s = 0.6 * x  # same phase, |S| <= |X|
    mask = torch.rand(2, 4, 6, generator=g)
    lengths = torch.tensor([6, 2])
    assert float(psa(mask, x, s, lengths)) == pytest.approx(
        float(msa(mask, x.abs(), s.abs(), lengths)), rel=1e-5
    )


def test_psa_target_matches_oracle_psf() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.complex(torch.randn(3, 8, 5, generator=g), torch.randn(3, 8, 5, generator=g))
    s = torch.complex(torch.randn(3, 8, 5, generator=g), torch.randn(3, 8, 5, generator=g))
    torch.testing.assert_close(psa_target(x, s), psf(s, x) * x.abs(), rtol=1e-5, atol=1e-5)


def test_psa_padding_invariance() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.complex(torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g))
    s = torch.complex(torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g))
    mask = torch.rand(2, 3, 4, generator=g)
    lengths = torch.tensor([4, 2])
    base = float(psa(mask, x, s, lengths))
    x2, s2 = x.clone(), s.clone()
    x2[1, :, 2:] = 100.0
    s2[1, :, 2:] = torch.tensor(-50.0j)
    assert float(psa(mask, x2, s2, lengths)) == pytest.approx(base, rel=1e-6)


def test_losses_reject_bad_input() -> None:
    a = torch.ones(2, 3, 4)
    with pytest.raises(ParameterError, match="shape"):
        msa(a, a, torch.ones(2, 3, 5))
    with pytest.raises(ParameterError, match="no valid frame"):
        msa(a, a, a, torch.tensor([0, 0]))
    with pytest.raises(ParameterError, match=r"\(B,\)"):
        msa(a, a, a, torch.tensor([1, 2, 3]))
    with pytest.raises(ParameterError, match="complex"):
        psa(a, a, a)


def test_mask_loss_dispatch() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.complex(torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g))
    s = 0.5 * x
    mask = torch.rand(2, 3, 4, generator=g)
    batch = {"noisy_mag": x.abs(), "clean_mag": s.abs(), "lengths": torch.tensor([4, 3])}
    assert float(mask_loss("msa", mask, batch)) == pytest.approx(
        float(msa(mask, x.abs(), s.abs(), batch["lengths"]))
    )
    with pytest.raises(ParameterError, match="noisy_stft"):
        mask_loss("psa", mask, batch)
    batch.update(noisy_stft=x, clean_stft=s)
    expected = float(psa(mask, x, s, batch["lengths"]))
    assert float(mask_loss("psa", mask, batch)) == pytest.approx(expected)
    # the target stored by the features stage, psf(S, X)·|X|, gives the same loss without the STFTs
    stored = torch.from_numpy(psf(s.numpy(), x.numpy())) * x.abs()
    assert torch.allclose(loss_target("psa", batch), stored, atol=1e-6)
    only_stored = {"noisy_mag": x.abs(), "psa_target": stored, "lengths": batch["lengths"]}
    assert float(mask_loss("psa", mask, only_stored)) == pytest.approx(expected, rel=1e-5)
    assert torch.equal(loss_target("msa", batch), batch["clean_mag"])
    with pytest.raises(ParameterError, match="must be one of"):
        mask_loss("l1", mask, batch)
