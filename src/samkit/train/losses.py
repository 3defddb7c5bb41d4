"""Training losses of SAM: focal + dice on mask logits (20:1) and MSE on the IoU head.

Every loss takes logits and targets of the same shape (B, ..., H, W) and returns one value per
mask, shape (B, ...), so the caller can pick the lowest-loss mask of a multimask output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import masks

FOCAL_WEIGHT = 20.0  # the paper's 20:1 focal:dice ratio
DICE_WEIGHT = 1.0
FOCAL_ALPHA = 0.25  # focal loss's weight on object pixels, detection's default (Lin et al.)


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = FOCAL_ALPHA, gamma: float = 2.0
) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al.), averaged over the last two (pixel) axes.

    logits: (..., H, W); targets in [0, 1], broadcastable to logits. alpha < 0 disables
    class weighting.
    """
    targets = targets.to(logits.dtype).expand_as(logits)
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(dim=(-2, -1))


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - (2 |P ∩ T| + s) / (|P| + |T| + s) with P = sigmoid(logits), per mask: (...)."""
    targets = targets.to(logits.dtype).expand_as(logits)
    p = logits.sigmoid()
    inter = (p * targets).sum(dim=(-2, -1))
    total = p.sum(dim=(-2, -1)) + targets.sum(dim=(-2, -1))
    return 1 - (2 * inter + smooth) / (total + smooth)


def mask_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = FOCAL_ALPHA
) -> torch.Tensor:
    """20 * focal (with class weight `alpha`) + dice, per mask: (...)."""
    focal = focal_loss(logits, targets, alpha=alpha)
    return FOCAL_WEIGHT * focal + DICE_WEIGHT * dice_loss(logits, targets)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of the predicted mask (logits > 0) with the target, per mask: (...).

    Two empty masks have IoU 1."""
    return masks.mask_iou(logits > 0, targets > 0.5)


def iou_loss(iou_pred: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Squared error between the IoU head's prediction (...) and the actual IoU of the
    predicted mask (no gradient flows into the masks through the target): (...)."""
    actual = mask_iou(logits.detach(), targets)
    return (iou_pred.float() - actual) ** 2
