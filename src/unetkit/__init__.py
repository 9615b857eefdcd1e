"""unetkit: train, run and trust U-Net family segmentation models on your own images.

The public API is re-exported here; heavy submodules are imported on first use so that
``import unetkit`` and ``unetkit --help`` stay fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "create_model": "unetkit.models",
    "list_models": "unetkit.models",
    "UNet": "unetkit.models",
    "UNet3Plus": "unetkit.models",
    "UNetPlusPlus": "unetkit.models",
    "ModelOutput": "unetkit.models",
    "summary": "unetkit.models",
    "RunConfig": "unetkit.config",
    "Trainer": "unetkit.training",
    "plan_training": "unetkit.commands.train",
    "load_checkpoint": "unetkit.checkpoint",
    "Predictor": "unetkit.inference.predictor",
    "EnsemblePredictor": "unetkit.inference.ensemble",
    "predict_files": "unetkit.inference.batch",
    "evaluate_folders": "unetkit.evaluation",
    "create_loss": "unetkit.losses",
    "ModelSummary": "unetkit.models",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unetkit' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = ["__version__", *_LAZY]
