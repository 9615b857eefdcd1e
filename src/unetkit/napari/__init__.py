"""The napari plugin: a **Predict** and a **Train / fine-tune** widget (npe2 manifest ``napari.yaml``,
found through the ``napari.manifest`` entry point; ``pip install 'unetkit[napari]'``).

Modules, each with one job:

* :mod:`.layers` — napari layer data ↔ unetkit arrays: channel axis, pairing images with labels,
  the training folder written from layers (NumPy only);
* :mod:`.jobs` — the work a widget starts in a worker thread: load a model, segment an image with
  tile progress and cancel, train from layers through ``unetkit train``'s own configuration (no Qt);
* :mod:`.predict_widget`, :mod:`.train_widget` — the magicgui widgets napari docks.

Nothing here is imported by ``import unetkit``; napari, magicgui and Qt are imported only by the two
widget modules, so the rest of unetkit never needs them.
"""

from __future__ import annotations

from pathlib import Path

#: the npe2 manifest of the plugin (the ``napari.manifest`` entry point names it)
MANIFEST = Path(__file__).with_name("napari.yaml")

__all__ = ["MANIFEST"]
