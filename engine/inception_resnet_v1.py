"""InceptionResNetV1 face embedding network (Szegedy et al. 2016, as used by FaceNet).

Parameter and buffer names follow facenet-pytorch's ``InceptionResnetV1`` so that its state dicts
(``vggface2``) load unchanged; the classification head (``logits.*``) is not part of this module
because deepwatch only needs embeddings. Input: N x 3 x 160 x 160 float, already standardised
(see ``engine.encoder``). Output: N x 512 L2-normalised embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Batch-norm epsilon of the TF-slim training graph the weights come from.
BATCH_NORM_EPS = 0.001
EMBEDDING_SIZE = 512
INPUT_SIZE_PX = 160


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm and ReLU (a TF-slim ``conv2d`` with ``batch_norm``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=BATCH_NORM_EPS, momentum=0.1, affine=True)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class Block35(nn.Module):
    """Inception-ResNet-A residual block on the 35x35-grid (17x17 for 160 px input) stage."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(256, 32, 1)
        self.branch1 = nn.Sequential(BasicConv2d(256, 32, 1), BasicConv2d(32, 32, 3, padding=1))
        self.branch2 = nn.Sequential(
            BasicConv2d(256, 32, 1), BasicConv2d(32, 32, 3, padding=1), BasicConv2d(32, 32, 3, padding=1)
        )
        self.conv2d = nn.Conv2d(96, 256, 1)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), dim=1)
        return self.relu(self.conv2d(mixed) * self.scale + x)


class Block17(nn.Module):
    """Inception-ResNet-B residual block (factorised 1x7 / 7x1 convolutions)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(896, 128, 1)
        self.branch1 = nn.Sequential(
            BasicConv2d(896, 128, 1),
            BasicConv2d(128, 128, (1, 7), padding=(0, 3)),
            BasicConv2d(128, 128, (7, 1), padding=(3, 0)),
        )
        self.conv2d = nn.Conv2d(256, 896, 1)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat((self.branch0(x), self.branch1(x)), dim=1)
        return self.relu(self.conv2d(mixed) * self.scale + x)


class Block8(nn.Module):
    """Inception-ResNet-C residual block; the network's last one has no ReLU (``no_relu``)."""

    def __init__(self, scale: float = 1.0, no_relu: bool = False) -> None:
        super().__init__()
        self.scale = scale
        self.no_relu = no_relu
        self.branch0 = BasicConv2d(1792, 192, 1)
        self.branch1 = nn.Sequential(
            BasicConv2d(1792, 192, 1),
            BasicConv2d(192, 192, (1, 3), padding=(0, 1)),
            BasicConv2d(192, 192, (3, 1), padding=(1, 0)),
        )
        self.conv2d = nn.Conv2d(384, 1792, 1)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat((self.branch0(x), self.branch1(x)), dim=1)
        out = self.conv2d(mixed) * self.scale + x
        return out if self.no_relu else self.relu(out)


class Mixed6a(nn.Module):
    """Reduction-A: 256 -> 896 channels, spatial size halved."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = BasicConv2d(256, 384, 3, stride=2)
        self.branch1 = nn.Sequential(
            BasicConv2d(256, 192, 1), BasicConv2d(192, 192, 3, padding=1), BasicConv2d(192, 256, 3, stride=2)
        )
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x)), dim=1)


class Mixed7a(nn.Module):
    """Reduction-B: 896 -> 1792 channels, spatial size halved."""

    def __init__(self) -> None:
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv2d(896, 256, 1), BasicConv2d(256, 384, 3, stride=2))
        self.branch1 = nn.Sequential(BasicConv2d(896, 256, 1), BasicConv2d(256, 256, 3, stride=2))
        self.branch2 = nn.Sequential(
            BasicConv2d(896, 256, 1), BasicConv2d(256, 256, 3, padding=1), BasicConv2d(256, 256, 3, stride=2)
        )
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)), dim=1)


class InceptionResnetV1(nn.Module):
    """The FaceNet embedding network; ``forward`` returns N x 512 L2-normalised embeddings."""

    def __init__(self, dropout_prob: float = 0.6) -> None:
        super().__init__()
        self.conv2d_1a = BasicConv2d(3, 32, 3, stride=2)
        self.conv2d_2a = BasicConv2d(32, 32, 3)
        self.conv2d_2b = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(64, 80, 1)
        self.conv2d_4a = BasicConv2d(80, 192, 3)
        self.conv2d_4b = BasicConv2d(192, 256, 3, stride=2)
        self.repeat_1 = nn.Sequential(*(Block35(scale=0.17) for _ in range(5)))
        self.mixed_6a = Mixed6a()
        self.repeat_2 = nn.Sequential(*(Block17(scale=0.10) for _ in range(10)))
        self.mixed_7a = Mixed7a()
        self.repeat_3 = nn.Sequential(*(Block8(scale=0.20) for _ in range(5)))
        self.block8 = Block8(no_relu=True)
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout_prob)
        self.last_linear = nn.Linear(1792, EMBEDDING_SIZE, bias=False)
        self.last_bn = nn.BatchNorm1d(EMBEDDING_SIZE, eps=BATCH_NORM_EPS, momentum=0.1, affine=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 1792-channel map before pooling (N x 1792 x 3 x 3 for 160 px input)."""
        x = self.conv2d_1a(x)
        x = self.conv2d_2a(x)
        x = self.conv2d_2b(x)
        x = self.maxpool_3a(x)
        x = self.conv2d_3b(x)
        x = self.conv2d_4a(x)
        x = self.conv2d_4b(x)
        x = self.repeat_1(x)
        x = self.mixed_6a(x)
        x = self.repeat_2(x)
        x = self.mixed_7a(x)
        x = self.repeat_3(x)
        return self.block8(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool_1a(self.features(x))
        x = self.dropout(x.flatten(1))
        x = self.last_bn(self.last_linear(x))
        return F.normalize(x, p=2.0, dim=1)
