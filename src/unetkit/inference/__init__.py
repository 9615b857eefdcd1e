"""Inference: pure tiling maths (grids, blend weights, mirror padding, stitching)."""

from .tiling import (
    OverlapTile,
    OverlapTileGrid,
    OverlapTileSpec,
    Stitcher,
    choose_overlap_tile,
    constant_weights,
    gaussian_weights,
    mirror_indices,
    mirror_pad,
    overlap_tile_grid,
    predict_overlap_tile,
    predict_tiled,
    sliding_window_grid,
    tile_alignment,
    tile_starts,
)

__all__ = [
    "OverlapTile",
    "OverlapTileGrid",
    "OverlapTileSpec",
    "Stitcher",
    "choose_overlap_tile",
    "constant_weights",
    "gaussian_weights",
    "mirror_indices",
    "mirror_pad",
    "overlap_tile_grid",
    "predict_overlap_tile",
    "predict_tiled",
    "sliding_window_grid",
    "tile_alignment",
    "tile_starts",
]
