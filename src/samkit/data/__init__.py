"""Datasets: synthetic scenes, SA-1B folders and COCO instances files."""

from .folders import CocoInstances, SA1BFolder, Sample
from .synthetic import Scene, SceneObject, SyntheticScenes, make_scene

__all__ = [
    "CocoInstances",
    "SA1BFolder",
    "Sample",
    "Scene",
    "SceneObject",
    "SyntheticScenes",
    "make_scene",
]
