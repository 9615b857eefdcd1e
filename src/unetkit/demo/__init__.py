"""The end-to-end demo: synthetic touching cells → the original U-Net with the border weight map →
overlap-tile prediction of a large image → watershed instances → pixel and object metrics → report.

``unetkit demo`` (``make demo``) runs :func:`run_demo`; :mod:`unetkit.demo.synthetic` makes the data.
"""

from .pipeline import DemoOptions, DemoResult, run_demo
from .synthetic import CellStyle, synthetic_cells, touching_fraction, write_dataset

__all__ = [
    "CellStyle",
    "DemoOptions",
    "DemoResult",
    "run_demo",
    "synthetic_cells",
    "touching_fraction",
    "write_dataset",
]
