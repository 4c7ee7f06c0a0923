"""Procedural test data with ground truth: deforming meshes whose true motion is known exactly."""
