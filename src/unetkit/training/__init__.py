"""Training: the trainer loop, optimisers and schedules, checkpoints, callbacks, torchrun/DDP."""

from .checkpoint import build_model, load_checkpoint, save_checkpoint
from .trainer import Trainer, TrainResult

__all__ = ["TrainResult", "Trainer", "build_model", "load_checkpoint", "save_checkpoint"]
