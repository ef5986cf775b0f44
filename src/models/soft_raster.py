"""A differentiable relaxation of :func:`layout.raster.rasterize`, for gradient refinement.

Same pixel convention as the exact raster (pixel (r, c) centred at ((c + 0.5), (r + 0.5)) x
P / S from the cell's lower-left corner, indexed [y, x]). Each primitive's occupancy at a pixel
centre is ``sigmoid(-d / (edge_px x pixel))`` of an approximate signed distance ``d`` in nm
(rectangle: the box distance; ellipse: the radial excess scaled by its half minor axis; a ring:
its outer ellipse less its hole), and primitives merge as ``1 - prod(1 - occupancy)``. As
``edge_px`` falls towards 0 the image tends to the exact raster; a refinement sharpens it over
its steps so early gradients see edges a few pixels wide and late ones the binary image.
"""

from __future__ import annotations

import torch
from torch import Tensor

from layout.design import Kind

IMAGE_SIZE = 128


def soft_rasterize(
    period_nm: Tensor,
    kind: Tensor,
    shape_nm: Tensor,
    edge_px: float,
    size: int = IMAGE_SIZE,
) -> Tensor:
    """(N, size, size) occupancy in [0, 1]. ``kind`` (N, K) int (Kind.EMPTY for an unused
    slot), ``shape_nm`` (N, K, 6): centre x, centre y, width, height, hole width, hole height."""
    if edge_px <= 0:
        raise ValueError(f"edge_px={edge_px} must be > 0")
    pixel = (period_nm / size)[:, None, None, None]  # (N, 1, 1, 1)
    centres = torch.arange(size, dtype=shape_nm.dtype, device=shape_nm.device) + 0.5
    x = centres[None, None, None, :] * pixel  # (N, 1, 1, S)
    y = centres[None, None, :, None] * pixel  # (N, 1, S, 1)
    cx, cy, w, h, iw, ih = (shape_nm[..., i][..., None, None] for i in range(6))  # (N, K, 1, 1)
    dx, dy = x - cx, y - cy
    scale = edge_px * pixel

    def ellipse(half_w: Tensor, half_h: Tensor) -> Tensor:
        hw, hh = half_w.clamp_min(1e-3), half_h.clamp_min(1e-3)
        r = torch.sqrt((dx / hw) ** 2 + (dy / hh) ** 2 + 1e-12)
        return (r - 1.0) * torch.minimum(hw, hh)

    box = torch.maximum(dx.abs() - w / 2, dy.abs() - h / 2)
    outer = torch.where((kind == Kind.RECTANGLE)[..., None, None], box, ellipse(w / 2, h / 2))
    occupancy = torch.sigmoid(-outer / scale)
    hole = torch.sigmoid(-ellipse(iw / 2, ih / 2) / scale)
    occupancy = torch.where((kind == Kind.RING)[..., None, None], occupancy * (1 - hole), occupancy)
    occupancy = occupancy * (kind != Kind.EMPTY)[..., None, None]
    return 1.0 - torch.prod(1.0 - occupancy, dim=1)
