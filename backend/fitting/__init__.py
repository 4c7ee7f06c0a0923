"""Fitting a mesh to a video without learned weights (issue 12): camera, deformation graph,
evidence from the frames (silhouettes, optical flow), and the fit that joins them."""

from .camera import Camera, estimate_camera
from .fit import FitResult, FitSettings, fit_video

__all__ = ["Camera", "FitResult", "FitSettings", "estimate_camera", "fit_video"]
