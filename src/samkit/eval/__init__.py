"""Evaluation: the interactive click protocol and mIoU after k clicks, per group."""

from .clicks import click_ious, first_click, next_click, random_click, run_protocol

__all__ = ["click_ious", "first_click", "next_click", "random_click", "run_protocol"]
