"""Training losses: gradients on empty masks, the similarity-BCE floor, the total loss."""

from __future__ import annotations

import math

import pytest
import torch

from streamavs.errors import ConfigError, InputError
from streamavs.model.segmenter import AVSOutput
from streamavs.training.losses import LossConfig, mask_loss, similarity_loss, soft_dice_loss, total_loss


def _published_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The AVSBench / robust-AVS code's Dice loss, for comparison."""
    p, y = torch.sigmoid(logits).flatten(1), target.flatten(1)
    d = 2 * (p * y).sum(-1) / ((p * p).sum(-1) + 0.001 + (y * y).sum(-1) + 0.001)
    return (1 - d).mean()


@pytest.mark.parametrize("dice_weight", [0.0, 1.0])
def test_mask_loss_has_a_gradient_on_an_empty_target(dice_weight):
    logits = torch.full((2, 1, 8, 8), 2.0, requires_grad=True)  # confident foreground everywhere
    empty = torch.zeros(2, 1, 8, 8)
    mask_loss(logits, empty, dice_weight=dice_weight).backward()
    assert float(logits.grad.min()) > 0  # every pixel is pushed towards background


def test_two_sided_dice_is_informative_where_the_published_dice_is_constant():
    empty = torch.zeros(1, 1, 8, 8)
    a = torch.full((1, 1, 8, 8), 3.0, requires_grad=True)
    b = torch.full((1, 1, 8, 8), -3.0)
    assert float(_published_dice(a.detach(), empty)) == pytest.approx(1.0)
    assert float(_published_dice(b, empty)) == pytest.approx(1.0)  # constant: no signal
    _published_dice(a, empty).backward()
    assert float(a.grad.abs().max()) == 0.0
    assert float(soft_dice_loss(a.detach(), empty)) > 0.4 > float(soft_dice_loss(b, empty))
    assert float(soft_dice_loss(torch.full((1, 1, 8, 8), -30.0), empty)) < 1e-6  # empty prediction: ~0


def test_soft_dice_on_a_perfect_nonempty_prediction_is_near_zero():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:5, 2:6] = 1
    logits = (target * 2 - 1) * 30
    assert float(soft_dice_loss(logits, target)) < 1e-6
    assert float(soft_dice_loss(-logits, target)) > 0.9


def test_similarity_loss_floor_with_scale_one_and_lower_with_a_larger_scale():
    label = torch.tensor([1.0, 0.0, 1.0, 0.0])
    perfect_cos = label * 2 - 1  # +1 for positives, -1 for negatives
    floor = float(similarity_loss(perfect_cos, label))  # paper form: sounding_logit = cos
    assert floor == pytest.approx(-math.log(1 / (1 + math.exp(-1))), abs=1e-6)
    assert floor == pytest.approx(0.3133, abs=1e-4)
    assert float(similarity_loss(10.0 * perfect_cos, label)) < 1e-4
    assert float(similarity_loss(-perfect_cos, label)) > floor  # wrong cosines cost more


def test_total_loss_combines_the_terms():
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    sim = torch.tensor([0.3, -0.2], requires_grad=True)
    out = AVSOutput(logits, sim, sim * 1.0, torch.zeros(2, 4, 4, 4))
    batch = {"mask": (torch.rand(2, 1, 16, 16) > 0.5).float(), "label": torch.tensor([1.0, 0.0])}
    cfg = LossConfig(lambda_sim=0.5, dice_weight=1.0)
    loss, parts = total_loss(out, batch, cfg)
    want = mask_loss(logits, batch["mask"], 1.0) + 0.5 * similarity_loss(sim, batch["label"])
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    assert set(parts) == {"mask", "sim", "total"} and not parts["total"].requires_grad
    loss.backward()
    assert float(sim.grad.abs().sum()) > 0
    loss0, parts0 = total_loss(out, batch, LossConfig(lambda_sim=0.0))
    assert "sim" not in parts0 and loss0.item() == pytest.approx(mask_loss(logits, batch["mask"]).item())


def test_loss_input_errors():
    with pytest.raises(InputError, match="same shape"):
        mask_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4))
    with pytest.raises(InputError, match=r"batch\['label'\]"):
        total_loss(AVSOutput(*[torch.zeros(1)] * 4), {"mask": torch.zeros(1)})
    with pytest.raises(ConfigError, match="lambda_sim must be a number >= 0"):
        LossConfig(lambda_sim=-1)
