"""What a backbone's ``weights`` argument is, and the error when pretrained weights cannot be had.

Shared by `tasks.models.backbones` and the builders it registers (`tasks.models.lite0`), which
therefore need not import each other.
"""

from __future__ import annotations

from pathlib import Path

#: ``"imagenet"``, ``"random"``, or a weights file.
WeightsArg = str | Path


class BackboneWeightsUnavailable(RuntimeError):
    """Pretrained weights could not be found locally nor downloaded."""
