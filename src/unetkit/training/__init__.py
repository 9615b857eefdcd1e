"""Training: the trainer loop, optimisers and schedules, callbacks, torchrun/DDP.

Checkpoints live one layer below, in :mod:`unetkit.checkpoint` (inference reads them too);
``build_model``, ``load_checkpoint`` and ``save_checkpoint`` stay importable from here.
"""

from ..checkpoint import build_model, load_checkpoint, save_checkpoint

__all__ = ["TrainResult", "Trainer", "build_model", "load_checkpoint", "save_checkpoint"]


def __getattr__(name: str):
    """``Trainer`` and ``TrainResult`` on first use: loading a checkpoint (predict, export) need not
    import the trainer and its dependencies (the data pipeline, losses, callbacks)."""
    if name in ("Trainer", "TrainResult"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
