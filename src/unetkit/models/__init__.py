"""The U-Net family: UNet (original and same-padding), UNet 3+, UNet++, in 2D and 3D."""

from ..registry import Registry
from .base import ModelOutput, SegmentationModel
from .geometry import SizeRule, size_rule_of
from .summarize import ModelSummary, summary
from .unet import UNet
from .unet3plus import UNet3Plus
from .unetpp import UNetPlusPlus

MODELS = Registry("model")
_r = MODELS.register
_r("unet", UNet, "same-padding U-Net: batch norm, max-pool, 2×2 transposed conv (any input size)")
_r(
    "unet-bilinear",
    UNet,
    "same-padding U-Net with bilinear up-sampling and halved decoder (17.3 M)",
    upsample="interpolate",
)
_r(
    "unet-original",
    UNet,
    "Ronneberger 2015: valid convs, no norm, biases, 572 → 388 tiles",
    padding="valid",
    norm="none",
    bias=True,
)
_r(
    "unet-original-bn",
    UNet,
    "the well-known PyTorch transcription: original + batch norm in the encoder",
    padding="valid",
    encoder_norm="batch",
    decoder_norm="none",
    bias=True,
)
_r("unet-residual", UNet, "same-padding U-Net with residual blocks", residual=True)
_r(
    "unet-strided",
    UNet,
    "medical variant: 3×3 stride-2 conv down, 3×3 transposed conv up, instance norm",
    downsample="conv3",
    upsample="transpose3",
    norm="instance",
    act="leaky_relu",
)
_r(
    "unet3d",
    UNet,
    "3D U-Net (Çiçek 2016 layout): depth 3, second conv doubles the width",
    spatial_dims=3,
    features=(64, 128, 256, 512),
    double_second_conv=True,
)
_r(
    "unet3plus",
    UNet3Plus,
    "UNet 3+ with full-scale skips (official code: conv biases + batch norm)",
    bias=True,
)
_r(
    "unet3plus-ds",
    UNet3Plus,
    "UNet 3+ with full-scale deep supervision",
    bias=True,
    deep_supervision=True,
)
_r(
    "unet3plus-ds-cgm",
    UNet3Plus,
    "UNet 3+ with deep supervision and the classification-guided module",
    bias=True,
    deep_supervision=True,
    cgm=True,
)
_r("unetpp", UNetPlusPlus, "UNet++ nested dense skips")
_r("unetpp-ds", UNetPlusPlus, "UNet++ with deep supervision", deep_supervision=True)
del _r


def create_model(name: str, **kwargs) -> SegmentationModel:
    """Build a registered model preset; keyword arguments override the preset (``None`` = keep).

    Example:
        >>> net = create_model("unet-original", in_channels=1, num_classes=2)
        >>> net.output_size(572)
        388
    """
    return MODELS.create(name, **kwargs)


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return MODELS.names()


__all__ = [
    "MODELS",
    "ModelOutput",
    "SegmentationModel",
    "SizeRule",
    "UNet",
    "UNet3Plus",
    "UNetPlusPlus",
    "create_model",
    "list_models",
    "ModelSummary",
    "size_rule_of",
    "summary",
]
