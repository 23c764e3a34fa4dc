"""The PyTorch reference U-Net (the Udemy/torchio liver recipe, filters generalised), shared
by the golden-reference generator (make_golden.py) and the benchmark peers
(bench/peers/unet_torch.py). Parameter names (layer1.step.0.weight, ...) are the ones cuseg's
checkpoints use. Default filters (32, 64, 128, 256): 5,836,099 parameters."""
import torch
import torch.nn as nn


class DoubleConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.step = nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1), nn.ReLU(),
                                  nn.Conv3d(cout, cout, 3, padding=1), nn.ReLU())

    def forward(self, x):
        return self.step(x)


class UNet(nn.Module):
    """The reference network (Udemy/torchio liver recipe), filters generalised."""

    def __init__(self, filters=(32, 64, 128, 256), in_channels=1, classes=3):
        super().__init__()
        f1, f2, f3, f4 = filters
        self.layer1 = DoubleConv(in_channels, f1)
        self.layer2 = DoubleConv(f1, f2)
        self.layer3 = DoubleConv(f2, f3)
        self.layer4 = DoubleConv(f3, f4)
        self.layer5 = DoubleConv(f4 + f3, f3)
        self.layer6 = DoubleConv(f3 + f2, f2)
        self.layer7 = DoubleConv(f2 + f1, f1)
        self.layer8 = nn.Conv3d(f1, classes, 1)
        self.maxpool = nn.MaxPool3d(2)
        self.up = nn.Upsample(scale_factor=2, mode="trilinear")  # align_corners=False

    def forward(self, x):
        x1 = self.layer1(x)
        x2 = self.layer2(self.maxpool(x1))
        x3 = self.layer3(self.maxpool(x2))
        x4 = self.layer4(self.maxpool(x3))
        x5 = self.layer5(torch.cat([self.up(x4), x3], 1))
        x6 = self.layer6(torch.cat([self.up(x5), x2], 1))
        x7 = self.layer7(torch.cat([self.up(x6), x1], 1))
        return self.layer8(x7)
