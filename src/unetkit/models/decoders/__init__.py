"""Decoders, each built from the :class:`~unetkit.models.encoder.Encoder` it serves."""

from .unet import UNetDecoder
from .unet3plus import UNet3PlusDecoder
from .unetpp import UNetPlusPlusDecoder

__all__ = ["UNetDecoder", "UNet3PlusDecoder", "UNetPlusPlusDecoder"]
