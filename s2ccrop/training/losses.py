"""Training targets and losses.

Every candidate of a photo is scored against the human crop by IoU; the model is trained to rank
candidates like the IoU does (a listwise soft-target cross-entropy), and to agree with the human
pairwise votes (a margin ranking loss weighted by how clear the vote was).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def box_iou(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of each xyxy box [N, 4] with one box [4]."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(boxes[:, 2], gt[2]) - np.maximum(boxes[:, 0], gt[0]), 0, None)
    iy = np.clip(np.minimum(boxes[:, 3], gt[3]) - np.maximum(boxes[:, 1], gt[1]), 0, None)
    inter = ix * iy
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + (gt[2] - gt[0]) * (gt[3] - gt[1]) - inter
    return inter / np.maximum(union, 1e-9)


def listwise_loss(scores: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy between softmax(targets / T) and softmax(scores): rank like the targets do."""
    p = torch.softmax(targets / temperature, dim=0)
    return -(p * torch.log_softmax(scores, dim=0)).sum()


def vote_loss(s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor, margin: float) -> torch.Tensor:
    """Margin ranking on human votes; weight w in [-1, 1]: > 0 prefers box 0, |w| = vote clarity."""
    if s0.numel() == 0:
        return s0.new_zeros(())
    sign = torch.sign(weights)
    return (weights.abs() * F.relu(margin * weights.abs() - sign * (s0 - s1))).sum() / weights.abs().sum().clamp_min(1e-6)


def averaged_box_loss(scores: torch.Tensor, boxes: torch.Tensor, gt: torch.Tensor, top: int, tau: float) -> torch.Tensor:
    """1 - IoU(the softmax(score / tau)-weighted mean of the `top` best boxes, the human crop): what
    inference with `select.average_box` gets, made differentiable through the weights (which boxes are
    among the best is not)."""
    order = torch.argsort(scores.detach(), descending=True)[:top]
    w = torch.softmax(scores[order] / tau, dim=0)
    box = (w[:, None] * boxes[order]).sum(0)
    ix = (torch.minimum(box[2], gt[2]) - torch.maximum(box[0], gt[0])).clamp_min(0)
    iy = (torch.minimum(box[3], gt[3]) - torch.maximum(box[1], gt[1])).clamp_min(0)
    inter = ix * iy
    union = (box[2] - box[0]) * (box[3] - box[1]) + (gt[2] - gt[0]) * (gt[3] - gt[1]) - inter
    return 1 - inter / union.clamp_min(1e-9)
