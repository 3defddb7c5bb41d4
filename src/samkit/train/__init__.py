"""Training SAM with the paper's recipe: losses, interactive prompt simulation, the loop."""

from .config import TrainConfig
from .losses import dice_loss, focal_loss, iou_loss, mask_iou, mask_loss
from .prompts import noisy_boxes, protocol_points, sample_error_points, sample_points_in
from .trainer import train, validate

__all__ = [
    "TrainConfig",
    "dice_loss",
    "focal_loss",
    "iou_loss",
    "mask_iou",
    "mask_loss",
    "noisy_boxes",
    "protocol_points",
    "sample_error_points",
    "sample_points_in",
    "train",
    "validate",
]
