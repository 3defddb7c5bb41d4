"""`MaskData`: columns of per-mask values (RLEs, boxes, scores, ...) filtered and joined together.

The automatic mask generator keeps its candidate masks in one; the class has the official
`segment_anything.utils.amg.MaskData` interface (keyword construction, item access, `filter`,
`cat`, `to_numpy`, `items`), so code written against the official one works unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import ItemsView
from typing import Any

import numpy as np
import torch

Column = list[Any] | np.ndarray | torch.Tensor | None


class MaskData:
    """Named columns of equal length: lists, numpy arrays or torch tensors (or None)."""

    def __init__(self, **kwargs: Any) -> None:
        for name, value in kwargs.items():
            _check_column(name, value)
        self._stats: dict[str, Column] = dict(kwargs)

    def __setitem__(self, key: str, item: Any) -> None:
        _check_column(key, item)
        self._stats[key] = item

    def __delitem__(self, key: str) -> None:
        del self._stats[key]

    def __getitem__(self, key: str) -> Any:
        return self._stats[key]

    def __len__(self) -> int:
        """Rows: the length of the first column that is not None (0 with none)."""
        return next((len(v) for v in self._stats.values() if v is not None), 0)

    def items(self) -> ItemsView[str, Column]:
        return self._stats.items()

    def filter(self, keep: torch.Tensor) -> None:
        """Keep the rows that `keep` names: a bool mask, or indices (in their order)."""
        for name, value in self._stats.items():
            if value is None:
                continue
            if isinstance(value, torch.Tensor):
                self._stats[name] = value[torch.as_tensor(keep, device=value.device)]
            elif isinstance(value, np.ndarray):
                self._stats[name] = value[keep.detach().cpu().numpy()]
            elif keep.dtype == torch.bool:
                self._stats[name] = [v for v, k in zip(value, keep.tolist(), strict=True) if k]
            else:
                self._stats[name] = [value[int(i)] for i in keep]

    def cat(self, new_stats: MaskData) -> None:
        """Append the rows of `new_stats` (a copy of them) to the matching columns."""
        for name, value in new_stats.items():
            mine = self._stats.get(name)
            if mine is None:
                self._stats[name] = copy.deepcopy(value)
            elif isinstance(value, torch.Tensor) and isinstance(mine, torch.Tensor):
                self._stats[name] = torch.cat([mine, value], dim=0)
            elif isinstance(value, np.ndarray) and isinstance(mine, np.ndarray):
                self._stats[name] = np.concatenate([mine, value], axis=0)
            elif isinstance(value, list) and isinstance(mine, list):
                self._stats[name] = mine + copy.deepcopy(value)
            else:
                raise TypeError(
                    f"MaskData column {name!r}: cannot append {type(value).__name__} "
                    f"to {type(mine).__name__}"
                )

    def to_numpy(self) -> None:
        """Turn every tensor column into a numpy array (on the CPU)."""
        for name, value in self._stats.items():
            if isinstance(value, torch.Tensor):
                self._stats[name] = value.detach().cpu().numpy()


def _check_column(name: str, value: Any) -> None:
    if not isinstance(value, list | np.ndarray | torch.Tensor):
        raise TypeError(
            f"MaskData column {name!r} must be a list, numpy array or torch tensor; "
            f"got {type(value).__name__}"
        )
