"""A transcription of ssd.pytorch's SSD300 (ssd.py: vgg, add_extras, multibox, SSD.forward in
train phase), used as the reference the repssd model and the weight import are checked against.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BASE = [64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512]
EXTRAS = [256, "S", 512, 128, "S", 256, 128, 256, 128, 256]
MBOX = [4, 6, 6, 6, 4, 4]


def vgg(cfg=BASE, i=3):
    layers, in_channels = [], i
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        elif v == "C":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)]
        else:
            layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = v
    pool5 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
    conv6 = nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6)
    conv7 = nn.Conv2d(1024, 1024, kernel_size=1)
    return layers + [pool5, conv6, nn.ReLU(inplace=True), conv7, nn.ReLU(inplace=True)]


def add_extras(cfg=EXTRAS, i=1024):
    layers, in_channels, flag = [], i, False
    for k, v in enumerate(cfg):
        if in_channels != "S":
            if v == "S":
                layers += [nn.Conv2d(in_channels, cfg[k + 1], kernel_size=(1, 3)[flag], stride=2, padding=1)]
            else:
                layers += [nn.Conv2d(in_channels, v, kernel_size=(1, 3)[flag])]
            flag = not flag
        in_channels = v
    return layers


class L2Norm(nn.Module):
    def __init__(self, n_channels, scale):
        super().__init__()
        self.weight = nn.Parameter(torch.full((n_channels,), float(scale)))
        self.eps = 1e-10

    def forward(self, x):
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return self.weight.unsqueeze(0).unsqueeze(2).unsqueeze(3).expand_as(x) * torch.div(x, norm)


class SSDPyTorch(nn.Module):
    """ssd.pytorch's SSD300 (state_dict keys vgg.N, L2Norm.weight, extras.N, loc.N, conf.N)."""

    def __init__(self, num_classes):
        super().__init__()
        base, extras = vgg(), add_extras()
        loc, conf = [], []
        for k, v in enumerate([21, -2]):
            loc += [nn.Conv2d(base[v].out_channels, MBOX[k] * 4, kernel_size=3, padding=1)]
            conf += [nn.Conv2d(base[v].out_channels, MBOX[k] * num_classes, kernel_size=3, padding=1)]
        for k, v in enumerate(extras[1::2], 2):
            loc += [nn.Conv2d(v.out_channels, MBOX[k] * 4, kernel_size=3, padding=1)]
            conf += [nn.Conv2d(v.out_channels, MBOX[k] * num_classes, kernel_size=3, padding=1)]
        self.num_classes = num_classes
        self.vgg = nn.ModuleList(base)
        self.L2Norm = L2Norm(512, 20)
        self.extras = nn.ModuleList(extras)
        self.loc = nn.ModuleList(loc)
        self.conf = nn.ModuleList(conf)

    def forward(self, x):
        sources, loc, conf = [], [], []
        for k in range(23):
            x = self.vgg[k](x)
        sources.append(self.L2Norm(x))
        for k in range(23, len(self.vgg)):
            x = self.vgg[k](x)
        sources.append(x)
        for k, v in enumerate(self.extras):
            x = F.relu(v(x), inplace=True)
            if k % 2 == 1:
                sources.append(x)
        for (x, l, c) in zip(sources, self.loc, self.conf):
            loc.append(l(x).permute(0, 2, 3, 1).contiguous())
            conf.append(c(x).permute(0, 2, 3, 1).contiguous())
        loc = torch.cat([o.view(o.size(0), -1) for o in loc], 1)
        conf = torch.cat([o.view(o.size(0), -1) for o in conf], 1)
        return loc.view(loc.size(0), -1, 4), conf.view(conf.size(0), -1, self.num_classes)
