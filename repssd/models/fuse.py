"""Inference-time BatchNorm folding: ``fuse_conv_bn(model)`` -> a copy whose convolutions carry
their BatchNorm.

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

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fuse_conv_bn"]


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and type(bn) is nn.BatchNorm2d and bn.track_running_stats
            and bn.running_mean is not None and bn.num_features == conv.out_channels)


def _sequential(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every ``Conv2d`` -> ``BatchNorm2d`` pair folded
    into one ``Conv2d`` with bias; ``model`` itself is not modified.

    Raises:
        ValueError: if ``model`` or any of its submodules is in training mode (folding uses the
            running statistics, which training-mode BatchNorm does not; call ``model.eval()``).
    """
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training:
        raise ValueError(f"fuse_conv_bn folds BatchNorm's running statistics and needs an eval-mode model; "
                         f"{len(training)} module(s) are in training mode (first: {training[0]!r}); "
                         "call model.eval() first")
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
