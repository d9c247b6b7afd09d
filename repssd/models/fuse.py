"""Inference-time rewrites of an SSD, each returning a copy and leaving the model alone.

- :func:`fuse_conv_bn`: every convolution carries its BatchNorm.
- :func:`for_inference`: that, plus TF ``SAME`` padding without a padded copy of the input
  (:class:`CropSamePadConv2d`) and, by default, channels_last weights.

In eval mode a BatchNorm after a convolution is an affine map per output channel,
``y = (conv(x) - mean) * gamma / sqrt(var + eps) + beta``, so it folds into the convolution's
weight and bias (:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`). The folded convolution is a
copy of the original one, of its class, so :class:`~repssd.models.mobilenet_tf.SamePadConv2d`
keeps TensorFlow's ``SAME`` padding; the BatchNorm is replaced by ``nn.Identity``.

Only pairs that are adjacent children of an ``nn.Sequential`` (or of a subclass that keeps its
``forward``) are folded: there the convolution's output goes to the BatchNorm and nowhere else.
That covers every conv + BN pair of repssd's models (``conv_bn`` blocks, torchvision's
``Conv2dNormActivation`` and ``InvertedResidual.conv``). BatchNorms without running statistics
(``track_running_stats=False`` normalise by the batch even in eval mode) are left alone.

The copy is for inference only: training it would train the folded weights with no BatchNorm.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .mobilenet_tf import SamePadConv2d

__all__ = ["fuse_conv_bn", "for_inference", "CropSamePadConv2d"]


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d and bn.track_running_stats
            and bn.running_mean is not None and bn.num_features == conv.out_channels)


def _sequential(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _refuse_training(model: nn.Module, what: str) -> None:
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training:
        raise ValueError(f"{what} folds BatchNorm's running statistics and needs an eval-mode model; "
                         f"{len(training)} module(s) are in training mode (first: {training[0]!r}); "
                         "call model.eval() first")


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every ``Conv2d`` -> ``BatchNorm2d`` pair folded
    into one ``Conv2d`` with bias; ``model`` itself is not modified.

    Raises:
        ValueError: if ``model`` or any of its submodules is in training mode (folding uses the
            running statistics, which training-mode BatchNorm does not; call ``model.eval()``).
    """
    _refuse_training(model, "fuse_conv_bn")
    fused = copy.deepcopy(model)
    for module in fused.modules():
        if not _sequential(module):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if _foldable(conv, bn):
                module._modules[first] = fuse_conv_bn_eval(conv, bn)
                module._modules[second] = nn.Identity()
    return fused


class CropSamePadConv2d(SamePadConv2d):
    """:class:`SamePadConv2d` that gets TF's asymmetric ``SAME`` padding without ``F.pad``.

    A stride-s convolution with symmetric zero padding ``p = before + s * m`` (the smallest such
    ``p`` that covers ``after``) sees the same windows as ``SAME``, shifted by ``m`` outputs, so
    the ``SAME`` output is a crop of it: on an even side (k 3, s 2: before 0, after 1) ``p = 2``
    and the first row/column is dropped; on an odd side ``SAME`` is symmetric and nothing is
    cropped. This computes at most one extra output row and column instead of writing a padded
    copy of the (4x larger) input, which is slower on a CPU. Same outputs, any input size.
    """

    def forward(self, x: Tensor) -> Tensor:
        stride, kernel = self.stride[0], self.kernel_size[0]
        if stride == 1:
            return super().forward(x)
        pads, crops = [], []
        for size in (x.shape[-2], x.shape[-1]):  # height, width
            out = math.ceil(size / stride)
            total = max((out - 1) * stride + kernel - size, 0)
            before, after = total // 2, total - total // 2
            shift = math.ceil(max(after - before, 0) / stride)
            pads.append(before + stride * shift)
            crops.append((shift, out))
        y = F.conv2d(x, self.weight, self.bias, self.stride, tuple(pads), self.dilation, self.groups)
        (top, height), (left, width) = crops
        if (top, left) == (0, 0) and y.shape[-2:] == (height, width):
            return y
        return y[..., top:top + height, left:left + width]


def for_inference(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """A copy of ``model`` for CPU inference: :func:`fuse_conv_bn`, every
    :class:`SamePadConv2d` as a :class:`CropSamePadConv2d`, and with ``channels_last`` the
    weights in channels_last (NHWC) memory format, which oneDNN's convolutions work in without
    reordering every input and output (feed it ``x.contiguous(memory_format=torch.channels_last)``
    or plain NCHW, which the first convolution converts). ``model`` is not modified.

    Raises:
        ValueError: if ``model`` or any of its submodules is in training mode.
    """
    _refuse_training(model, "for_inference")
    fast = fuse_conv_bn(model)
    for module in fast.modules():
        if type(module) is SamePadConv2d:
            module.__class__ = CropSamePadConv2d  # a subclass with no state of its own
    return fast.to(memory_format=torch.channels_last) if channels_last else fast
