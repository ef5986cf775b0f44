"""Basler cameras through pypylon."""

from __future__ import annotations

from instruments.basler.pylon_camera import BaslerCamera, CameraInfo, list_cameras

__all__ = ["BaslerCamera", "CameraInfo", "list_cameras"]
