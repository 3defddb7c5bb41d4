"""Evaluation: the interactive click protocol and mIoU after k clicks."""

from .clicks import click_ious, first_click, next_click

__all__ = ["click_ious", "first_click", "next_click"]
