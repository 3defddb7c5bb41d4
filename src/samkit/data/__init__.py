"""Datasets: synthetic scenes (more formats to come)."""

from .synthetic import Scene, SceneObject, SyntheticScenes, make_scene

__all__ = ["Scene", "SceneObject", "SyntheticScenes", "make_scene"]
