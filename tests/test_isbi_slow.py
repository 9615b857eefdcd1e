"""Real data: a 2D U-Net learns the ISBI 2012 membranes on 2 CPU cores within 5 minutes.

Scored independently of the trainer: the best checkpoint predicts the 3 validation slices and pixel
error and membrane Dice (membrane = mask value 0) are computed here with numpy.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from unetkit.config import RunConfig
from unetkit.inference.predictor import Predictor
from unetkit.io import read_image
from unetkit.training import Trainer

from .conftest import REPO


@pytest.mark.slow
def test_isbi2012_recipe_learns_membranes_in_five_minutes(shared_data, tmp_path):
    isbi = shared_data / "isbi2012"
    cfg = RunConfig.from_yaml(REPO / "examples" / "isbi2012.yaml").override({
        "data.train_dir": str(isbi / "train"), "data.val_dir": str(isbi / "val"),
        "train.time_budget_minutes": 4.0, "train.seed": 0})
    assert cfg.train.select_metric == "val_dice_c0" and cfg.model.name == "unet"
    t0 = time.monotonic()
    result = Trainer(cfg, run_dir=tmp_path / "run", progress=False).fit()
    minutes = (time.monotonic() - t0) / 60
    predictor = Predictor.from_checkpoint(result.run_dir / "checkpoints" / "best.pt")
    errors, dices = [], []
    for path in sorted((isbi / "val" / "images").glob("*.png")):
        image, _ = read_image(path)
        truth_membrane = np.asarray(Image.open(isbi / "val" / "masks" / path.name)) == 0
        pred_membrane = predictor.label_map.decode(predictor.predict(image))[0] == 0
        errors.append(np.mean(pred_membrane != truth_membrane))
        inter = np.logical_and(pred_membrane, truth_membrane).sum()
        dices.append(2 * inter / (pred_membrane.sum() + truth_membrane.sum()))
    pixel_error, membrane_dice = float(np.mean(errors)), float(np.mean(dices))
    print(f"ISBI 2012 val: pixel error {pixel_error:.4f}, membrane Dice {membrane_dice:.4f}, "
          f"{result.epochs_completed} epochs, {minutes:.2f} min ({result.stop_reason})")
    assert minutes < 5.0
    assert pixel_error <= 0.10
    assert membrane_dice >= 0.75
