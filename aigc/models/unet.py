"""The denoising U-Net of DDPM (Ho et al. 2020, https://arxiv.org/abs/2006.11239, appendix B).

A PixelCNN++-style U-Net: `channel_multipliers` gives one level per resolution (the side halves
between levels), each with `blocks_per_level` residual blocks; the decoder mirrors the encoder
with skip connections. Pieces:

- `timestep_embedding`: the Transformer's sinusoidal position encoding (Vaswani et al. 2017,
  https://arxiv.org/abs/1706.03762, section 3.5) of the step t, then an MLP; every residual
  block adds a projection of it to its features (Ho et al. appendix B).
- `ResidualBlock`: GroupNorm (Wu & He 2018) + SiLU + 3x3 conv, twice, with the time embedding
  added in between (as in Ho et al.'s Wide-ResNet blocks); the last conv starts at zero, so each
  block starts as the identity.
- `Attention2d`: multi-head dot-product attention (Vaswani et al. 2017) over the positions of a
  feature map, residual. Self-attention takes keys and values from the feature map itself (at
  the sides in `attention_resolutions`, and in the middle); cross-attention takes them from a
  label embedding, so the image features (queries) read the class (as Rombach et al. 2022,
  https://arxiv.org/abs/2112.10752, condition on text).
- `patch_size` p: the image's p x p patches become channels on the way in (pixel unshuffle) and
  back on the way out (pixel shuffle, Shi et al. 2016, https://arxiv.org/abs/1609.05158), so the
  network runs at side/p, as DiT patchifies (Peebles & Xie 2023,
  https://arxiv.org/abs/2212.09748): a ~4x cheaper U-Net for p = 2, the CPU default.
- Class conditioning: each class, and a learned null class for classifier-free guidance, is a
  short sequence of `LABEL_TOKENS` embedding vectors; cross-attention blocks sit after every
  self-attention block and in the middle of the network, and nowhere else does the label enter.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

HEAD_CHANNELS = 32  # channels per attention head (heads = channels // 32, at least 1)
LABEL_TOKENS = 4  # embedding vectors per class: what cross-attention attends over


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (B, dim) of steps t (B,): sin and cos of t / 10000^(2i/dim)
    (Vaswani et al. 2017, section 3.5)."""
    half = dim // 2
    frequencies = torch.exp(
        -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    angles = t.float()[:, None] * frequencies[None, :]  # (B, half)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def zero_init(module: nn.Module) -> nn.Module:
    """`module` with weights and bias set to 0 (the block it ends starts as the identity)."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


class ResidualBlock(nn.Module):
    """x -> x' + h, h = conv(SiLU(norm(conv(SiLU(norm(x))) + time)))  (B, C_in, H, W) -> C_out."""

    def __init__(self, inputs: int, outputs: int, time_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, inputs)
        self.conv1 = nn.Conv2d(inputs, outputs, 3, padding=1)
        self.time = nn.Linear(time_dim, outputs)
        self.norm2 = nn.GroupNorm(groups, outputs)
        self.conv2 = zero_init(nn.Conv2d(outputs, outputs, 3, padding=1))
        self.skip = nn.Conv2d(inputs, outputs, 1) if inputs != outputs else nn.Identity()

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(F.silu(time))[:, :, None, None]  # (B, C_out, 1, 1) broadcast
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Attention2d(nn.Module):
    """Residual multi-head attention from the positions of a feature map (queries) to itself
    (self-attention, `context_dim` None) or to a sequence of context vectors (cross-attention)."""

    def __init__(self, channels: int, groups: int, context_dim: int | None = None) -> None:
        super().__init__()
        self.heads = max(1, channels // HEAD_CHANNELS)
        self.norm = nn.GroupNorm(groups, channels)
        self.query = nn.Linear(channels, channels)
        self.key_value = nn.Linear(context_dim or channels, 2 * channels)
        self.out = zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        batch, channels, height, width = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        source = tokens if context is None else context  # (B, L, C or context_dim)
        key, value = self.key_value(source).chunk(2, dim=-1)

        def split_heads(z: torch.Tensor) -> torch.Tensor:  # (B, L, C) -> (B, heads, L, C/heads)
            return z.reshape(batch, -1, self.heads, channels // self.heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(
            split_heads(self.query(tokens)), split_heads(key), split_heads(value)
        )  # softmax(q k^T / sqrt(d)) v, (B, heads, HW, C/heads)
        attended = attended.transpose(1, 2).reshape(batch, height * width, channels)
        return x + self.out(attended).transpose(1, 2).reshape(batch, channels, height, width)


class Level(nn.Module):
    """The blocks at one resolution: residual blocks, each followed by self-attention and (when
    conditional) cross-attention where the resolution asks for attention."""

    def __init__(
        self,
        inputs: list[int],
        outputs: int,
        time_dim: int,
        groups: int,
        attention: bool,
        context_dim: int | None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResidualBlock(i, outputs, time_dim, groups) for i in inputs)
        count = len(inputs) if attention else 0
        self.self_attention = nn.ModuleList(Attention2d(outputs, groups) for _ in range(count))
        self.cross_attention = nn.ModuleList(
            Attention2d(outputs, groups, context_dim) for _ in range(count if context_dim else 0)
        )

    def block(self, index: int, x, time, context) -> torch.Tensor:
        x = self.blocks[index](x, time)
        if self.self_attention:
            x = self.self_attention[index](x)
        if self.cross_attention:
            x = self.cross_attention[index](x, context)
        return x


class UNet(nn.Module):
    """Predicts eps (or v) from (x_t (B, C, H, W), t (B,), labels (B,) or None) -> (B, C, H, W).

    `num_classes` > 0 makes it conditional: labels in 0..K-1 are classes and K is the null
    (unconditional) class; labels None means the null class.
    """

    def __init__(
        self,
        channels: int,
        width: int,
        channel_multipliers: tuple[int, ...],
        blocks_per_level: int,
        attention_resolutions: tuple[int, ...],
        image_size: int,
        norm_groups: int,
        num_classes: int = 0,
        patch_size: int = 1,
    ) -> None:
        super().__init__()
        self.width = width
        self.patch_size = patch_size
        self.num_classes = num_classes
        time_dim = 4 * width
        context_dim = time_dim if num_classes else None
        self.time_mlp = nn.Sequential(
            nn.Linear(width, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
        )
        self.label_embedding = None
        if num_classes:  # K classes + the null class, each LABEL_TOKENS vectors
            self.label_embedding = nn.Embedding(num_classes + 1, LABEL_TOKENS * time_dim)
        # Patches of p x p pixels become channels: (B, C, H, W) -> (B, C p^2, H/p, W/p).
        self.input = nn.Conv2d(channels * patch_size**2, width, 3, padding=1)

        # Encoder: level i works at side image_size / p / 2^i with width * multiplier_i channels.
        # Every block's output (and the input conv's, and each downsample's) is kept as a skip.
        widths = [width * m for m in channel_multipliers]
        sides = [image_size // patch_size // 2**i for i in range(len(widths))]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips, current = [width], width
        for level, (outputs, side) in enumerate(zip(widths, sides, strict=True)):
            inputs = [current] + [outputs] * (blocks_per_level - 1)
            attention = side in attention_resolutions
            self.down.append(Level(inputs, outputs, time_dim, norm_groups, attention, context_dim))
            skips += [outputs] * blocks_per_level
            current = outputs
            if level < len(widths) - 1:  # (B, c, s, s) -> (B, c, s/2, s/2)
                self.downsample.append(nn.Conv2d(current, current, 3, stride=2, padding=1))
                skips.append(current)

        # Middle, at the smallest side: residual, self-attention, cross-attention, residual.
        self.middle = nn.ModuleList(
            [ResidualBlock(current, current, time_dim, norm_groups) for _ in range(2)]
        )
        self.middle_attention = Attention2d(current, norm_groups)
        self.middle_cross = Attention2d(current, norm_groups, context_dim) if num_classes else None

        # Decoder: the levels in reverse, blocks_per_level + 1 blocks each, every block taking
        # one skip concatenated to its input; nearest upsampling + conv between levels.
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(widths))):
            outputs, attention = widths[level], sides[level] in attention_resolutions
            inputs = []
            for _ in range(blocks_per_level + 1):
                inputs.append(current + skips.pop())
                current = outputs
            self.up.append(Level(inputs, outputs, time_dim, norm_groups, attention, context_dim))
            if level > 0:  # (B, c, s, s) -> (B, c, 2s, 2s)
                self.upsample.append(nn.Conv2d(current, current, 3, padding=1))
        self.out_norm = nn.GroupNorm(norm_groups, current)
        self.output = zero_init(nn.Conv2d(current, channels * patch_size**2, 3, padding=1))

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        time = self.time_mlp(timestep_embedding(t, self.width))  # (B, 4 width)
        context = None
        if self.label_embedding is not None:
            if labels is None:
                labels = torch.full_like(t, self.num_classes)  # the null class
            # (B, LABEL_TOKENS, 4 width): the sequence cross-attention reads
            context = self.label_embedding(labels).reshape(len(t), LABEL_TOKENS, -1)

        h = self.input(F.pixel_unshuffle(x, self.patch_size))  # (B, width, H/p, W/p)
        skips = [h]
        for index, level in enumerate(self.down):
            for block in range(len(level.blocks)):
                h = level.block(block, h, time, context)
                skips.append(h)
            if index < len(self.downsample):
                h = self.downsample[index](h)
                skips.append(h)

        h = self.middle[0](h, time)
        h = self.middle_attention(h)
        if self.middle_cross is not None:
            h = self.middle_cross(h, context)
        h = self.middle[1](h, time)

        for index, level in enumerate(self.up):
            for block in range(len(level.blocks)):
                h = level.block(block, torch.cat([h, skips.pop()], dim=1), time, context)
            if index < len(self.upsample):
                h = self.upsample[index](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.output(F.silu(self.out_norm(h)))  # (B, C p^2, H/p, W/p)
        return F.pixel_shuffle(h, self.patch_size)  # (B, C, H, W)
