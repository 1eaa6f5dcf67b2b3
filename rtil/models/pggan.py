"""Progressive GAN (Karras et al. 2018) generator with cut points, and its discriminator.

Generator chain (R = resolution, n = log2(R) - 1 blocks, block j works at 4 * 2^j pixels):

    cut 0: the latent z (B, z_dim), pixel-normalised if `normalize_latent`
    block 0 (4x4):  dense z -> (C, 4, 4), act, then `first_block_convs` x [conv3x3, act]
    block j >= 1:   up x2, conv3x3, act, conv3x3, act
    cut k >= 1: the output of block k - 1, (B, C_r, r, r) with r = 4 * 2^(k - 1)
    image: ToRGB (1x1 conv, linear) of the top block's output

"act" is leaky ReLU (0.2) with pixel norm after it (official) or before it (the RTIL authors).
Weights use PGGAN's equalized learning rate (scale gain / sqrt(fan_in), raw bias added after).

Progressive growing: both networks hold a float buffer `lod` (level of detail) in
[0, num_blocks - 1]. lod = 0 uses every block (full resolution); lod = L uses blocks 0..n-1-L.
A fractional lod fades the top level in: with f = lod - floor(lod) the image is

    (1 - f) * ToRGB_top(x) + f * up(ToRGB_below(x_below))          (f = 1 - RTIL's alpha)

The generator always returns (B, C, R, R): an image made at a lower level is up-sampled x2 at a
time with `upsample_mode`, so the output is continuous in lod (also across integer lods) and the
discriminator's input shape never changes. The discriminator mirrors this on its input side.
"""

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from rtil.errors import RtilError
from rtil.models.common import NOISE_MODES, channel_table, check_resolution, check_state_shape
from rtil.models.state import SynthesisState
from rtil.nn.layers import MinibatchStdDev, normalize_2nd_moment
from rtil.nn.pggan_layers import (
    DOWNSAMPLE_MODES,
    HE_GAIN,
    UPSAMPLE_MODES,
    LatentTo4x4,
    WScaleConv2d,
    WScaleLinear,
    downsample2x,
    upsample2x,
)

OFFICIAL_LATENT_GAIN = math.sqrt(2.0) / 4  # the official dense layer's gain (matches the original Theano code)


def rtil_authors_arch(z_dim: int = 512, resolution: int = 256, channels: dict[int, int] | None = None) -> dict:
    """Generator constructor arguments that reproduce the RTIL authors' PGGAN (g33sean/RTIL
    mganprior/train/progan_modules.py, pixel_norm=True). `channels` defaults to their table for
    in_channel 256: 256 at 4-32 px, 128 at 64, 64 at 128 and 256.

    Their 4x4 input layer is an equalized ConvTranspose2d whose fan-in is computed from the wrong
    weight axis (C4 * 16 instead of z_dim), so its weight scale is sqrt(2 / (16 C4)).
    """
    if channels is None:
        table = {4: 256, 8: 256, 16: 256, 32: 256, 64: 128, 128: 64, 256: 64}
        channels = {r: c for r, c in table.items() if r <= resolution}
    channels = {int(r): int(c) for r, c in channels.items()}
    return dict(z_dim=z_dim, resolution=resolution, img_channels=3, channels=channels, upsample_mode="bilinear",
                normalize_latent=False, pixel_norm=True, pixel_norm_first=True, first_block_convs=2,
                latent_gain=math.sqrt(2.0 * z_dim / (16 * channels[4])), torgb_gain=HE_GAIN)


class ActivationNorm(nn.Module):
    """Leaky ReLU (0.2) and pixel norm on (B, C, H, W), in the official order (lrelu, then norm)
    or, with `pixel_norm_first`, the RTIL authors' order (norm, then lrelu)."""

    def __init__(self, pixel_norm: bool = True, pixel_norm_first: bool = False):
        super().__init__()
        self.pixel_norm = pixel_norm
        self.pixel_norm_first = pixel_norm_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pixel_norm and self.pixel_norm_first:
            x = normalize_2nd_moment(x)
        x = F.leaky_relu(x, 0.2)
        if self.pixel_norm and not self.pixel_norm_first:
            x = normalize_2nd_moment(x)
        return x

    def extra_repr(self) -> str:
        return f"pixel_norm={self.pixel_norm}, pixel_norm_first={self.pixel_norm_first}"


class ProgressiveGrowing:
    """The `lod` buffer logic shared by the generator and the discriminator (needs `num_blocks`
    and a scalar buffer `lod`)."""

    num_blocks: int
    lod: torch.Tensor

    def set_lod(self, value: float) -> None:
        """Set the level of detail: 0 = full resolution ... num_blocks - 1 = 4x4 only."""
        value = float(value)
        if not (math.isfinite(value) and 0.0 <= value <= self.num_blocks - 1):
            raise RtilError(f"lod must be in [0, {self.num_blocks - 1}] for this {self.resolution}-px network, "
                            f"got {value}")
        self.lod.fill_(value)

    def level(self) -> tuple[int, float]:
        """(top, fade): the highest block in use and the weight in [0, 1) of the level below it."""
        lod = float(self.lod)
        whole = math.floor(lod)
        return self.num_blocks - 1 - whole, lod - whole

    @property
    def current_resolution(self) -> int:
        """Native resolution of the top level in use (the fading-in level during a fade)."""
        return 4 * 2 ** self.level()[0]


class SynthesisBlock(nn.Module):
    """One resolution r of the generator and its ToRGB.

    Block 0: z (B, z_dim) -> (B, C, 4, 4). Block j >= 1: (B, C_in, r/2, r/2) -> (B, C_out, r, r).
    `torgb` maps the block output to (B, img_channels, r, r).
    """

    def __init__(self, resolution: int, in_channels: int, out_channels: int, img_channels: int, act: ActivationNorm,
                 upsample_mode: str, z_dim: int, latent_scale: float, first_block_convs: int, torgb_gain: float):
        super().__init__()
        self.resolution = resolution
        self.is_first = resolution == 4
        self.upsample_mode = upsample_mode
        self.act = act
        if self.is_first:
            self.latent = LatentTo4x4(z_dim, out_channels, latent_scale)
            conv_in = [out_channels] * first_block_convs
        else:
            conv_in = [in_channels, out_channels]
        self.convs = nn.ModuleList(WScaleConv2d(c, out_channels, 3) for c in conv_in)
        self.torgb = WScaleConv2d(out_channels, img_channels, 1, gain=torgb_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.latent(x)) if self.is_first else upsample2x(x, self.upsample_mode)
        for conv in self.convs:
            x = self.act(conv(x))
        return x


class Generator(ProgressiveGrowing, nn.Module):
    """PGGAN generator: z (B, z_dim) -> image (B, img_channels, R, R), linear output (no tanh).

    Defaults are the official PGGAN; `rtil_authors_arch()` gives the RTIL authors' variant.

    Args:
        z_dim: latent size.
        resolution: output resolution, a power of two >= 8.
        img_channels: 1 (grayscale) or 3 (RGB).
        channel_base, channel_max: channels at resolution r are min(channel_base // r, channel_max);
            16384 / 512 is the official table (TF fmap_base 8192: 512 up to 32 px, then halving).
        channels: optional explicit {resolution: channels} table (overrides base/max).
        upsample_mode: 'nearest' (official) or 'bilinear' (RTIL authors), for blocks, fade-in and
            the up-sampling of lower levels to R.
        normalize_latent: pixel-normalise z first (official) or not (RTIL authors).
        pixel_norm: use pixel norm after every layer (both references do).
        pixel_norm_first: pixel norm before the leaky ReLU (RTIL authors) instead of after (official).
        first_block_convs: 3x3 convs after the dense layer in the 4x4 block (official 1, RTIL 2).
        latent_gain: gain of the dense z -> 4x4 layer; its weight scale is latent_gain / sqrt(z_dim).
        torgb_gain: gain of the 1x1 ToRGB layers (official 1, RTIL sqrt(2)).
    """

    family = "pggan"

    def __init__(self, z_dim: int = 512, resolution: int = 256, img_channels: int = 3, channel_base: int = 16384,
                 channel_max: int = 512, channels: dict[int, int] | None = None, upsample_mode: str = "nearest",
                 normalize_latent: bool = True, pixel_norm: bool = True, pixel_norm_first: bool = False,
                 first_block_convs: int = 1, latent_gain: float = OFFICIAL_LATENT_GAIN, torgb_gain: float = 1.0):
        super().__init__()
        check_resolution(resolution, img_channels)
        if upsample_mode not in UPSAMPLE_MODES:
            raise RtilError(f"upsample_mode must be one of {UPSAMPLE_MODES}, got {upsample_mode!r}")
        if first_block_convs not in (1, 2):
            raise RtilError(f"first_block_convs must be 1 or 2, got {first_block_convs}")
        self.config = dict(z_dim=z_dim, resolution=resolution, img_channels=img_channels,
                           channel_base=channel_base, channel_max=channel_max,
                           channels=None if channels is None else {int(k): int(v) for k, v in channels.items()},
                           upsample_mode=upsample_mode, normalize_latent=normalize_latent, pixel_norm=pixel_norm,
                           pixel_norm_first=pixel_norm_first, first_block_convs=first_block_convs,
                           latent_gain=float(latent_gain), torgb_gain=float(torgb_gain))
        self.z_dim, self.resolution, self.img_channels = z_dim, resolution, img_channels
        self.upsample_mode = upsample_mode
        self.normalize_latent = normalize_latent
        self.channels = channel_table(resolution, channel_base, channel_max, channels)
        act = ActivationNorm(pixel_norm, pixel_norm_first)
        self.blocks = nn.ModuleList(
            SynthesisBlock(r, self.channels[max(r // 2, 4)], self.channels[r], img_channels, act, upsample_mode,
                           z_dim, latent_gain / math.sqrt(z_dim), first_block_convs, torgb_gain)
            for r in self.channels)
        self.num_blocks = len(self.blocks)
        self.register_buffer("lod", torch.zeros(()))

    # ---- shapes -------------------------------------------------------------------------------
    @property
    def highest_cut(self) -> int:
        """The highest cut `synthesize` can continue from at the current lod: top + 1 (the top
        block's output), or top (the top block's input) while fading in, as the level below's
        ToRGB needs those features too. (So during a fade DirichletFusion fuses one level lower
        than the RTIL authors, who fuse at the new level and feed the last code's features to
        the lower ToRGB; without a fade, and at cut 4 from 64 px on, the two agree.)"""
        top, fade = self.level()
        return top if fade > 0 else top + 1

    def cut_shape(self, cut: int) -> tuple[int, ...]:
        """(z_dim,) for cut 0, else (C, H, W) of the output of block cut - 1."""
        self._check_cut(cut)
        if cut == 0:
            return (self.z_dim,)
        res = 4 * 2 ** (cut - 1)
        return (self.channels[res], res, res)

    def _check_cut(self, cut: int) -> None:
        if not 0 <= cut <= self.num_blocks:
            raise RtilError(f"cut point {cut} is out of range 0..{self.num_blocks} for this generator")

    def noise_shapes(self) -> list[tuple[int, int]]:
        """No noise inputs."""
        return []

    def first_style_after(self, cut: int) -> int:
        """The latent z is PGGAN's one latent row; it is read only when synthesising from cut 0."""
        self._check_cut(cut)
        return 0 if cut == 0 else 1

    def state_at(self, cut: int, x: torch.Tensor | None, ws: torch.Tensor | None = None,
                 noises: list[torch.Tensor] | None = None, img: torch.Tensor | None = None) -> SynthesisState:
        """A checked state at `cut`: x is z (B, z_dim) at cut 0, else the features (B, *cut_shape(cut)).
        PGGAN has no styles, noise maps or skip image: ws, noises and img must be None (or empty noises)."""
        if ws is not None or noises or img is not None:
            raise RtilError("a PGGAN state has no styles, noise maps or skip image")
        self._check_cut(cut)
        if cut == 0:
            return self.start_state(x)
        check_state_shape("features", x, self.cut_shape(cut), cut)
        return SynthesisState(x=x, cut=cut)

    # ---- cut-point interface ------------------------------------------------------------------
    def start_state(self, z: torch.Tensor, inject: Mapping[int, torch.Tensor] | None = None) -> SynthesisState:
        """The state at cut 0: z (B, z_dim), pixel-normalised if `normalize_latent`, plus inject[0]."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise RtilError(f"z must have shape (B, {self.z_dim}), got {tuple(z.shape)}")
        z = z.to(self.blocks[0].torgb.weight.dtype)  # a float64 model computes in float64 whatever z's dtype
        x = normalize_2nd_moment(z) if self.normalize_latent else z
        if inject is not None and 0 in inject:
            x = x + inject[0]
        return SynthesisState(x=x, cut=0)

    def advance(self, state: SynthesisState, upto: int,
                inject: Mapping[int, torch.Tensor] | None = None) -> SynthesisState:
        """Run from `state.cut` to cut point `upto`, adding `inject[k]` to the features at every
        cut point k reached on the way (state.cut < k <= upto)."""
        self._check_cut(upto)
        if upto < state.cut:
            raise RtilError(f"cannot advance backwards from cut {state.cut} to {upto}")
        x = state.x
        for k in range(state.cut, upto):
            x = self.blocks[k](x)
            if inject is not None and (k + 1) in inject:
                x = x + inject[k + 1]
        return SynthesisState(x=x, cut=upto)

    def synthesize(self, state: SynthesisState, inject: Mapping[int, torch.Tensor] | None = None,
                   full_resolution: bool = True) -> torch.Tensor:
        """Continue from `state` (cut <= highest_cut) to the image at the current lod:
        (B, img_channels, R, R), or at the top level's own resolution if not `full_resolution`."""
        top, fade = self.level()
        if state.cut > self.highest_cut:
            raise RtilError(f"a state at cut {state.cut} cannot be synthesised at lod {float(self.lod):g}: "
                            f"the highest usable cut is {self.highest_cut}")
        below = self.advance(state, top, inject) if fade > 0 else state
        end = self.advance(below, top + 1, inject)
        img = self.blocks[top].torgb(end.x)
        if fade > 0:
            img_below = upsample2x(self.blocks[top - 1].torgb(below.x), self.upsample_mode)
            img = torch.lerp(img, img_below, fade)
        if full_resolution:
            for _ in range(self.num_blocks - 1 - top):
                img = upsample2x(img, self.upsample_mode)
        return img

    def features(self, z: torch.Tensor, upto: int, noise_mode: str = "random", truncation_psi: float = 1.0,
                 generator: torch.Generator | None = None,
                 inject: Mapping[int, torch.Tensor] | None = None) -> SynthesisState:
        """The state at cut point `upto` for latents z (B, z_dim). `noise_mode` and `generator` are
        accepted for API uniformity (PGGAN has no noise); `truncation_psi` must be 1."""
        self._check_sampling(noise_mode, truncation_psi)
        return self.advance(self.start_state(z, inject), upto, inject)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: str = "random",
                inject: Mapping[int, torch.Tensor] | None = None, generator: torch.Generator | None = None,
                **kwargs) -> torch.Tensor:
        """z (B, z_dim) -> image (B, img_channels, R, R) at the current lod. `inject` maps cut
        points to tensors added to the features there. `update_w_avg` is accepted and ignored."""
        for name in kwargs:
            if name != "update_w_avg":
                raise RtilError(f"the PGGAN generator has no {name!r} argument (it has no styles or noise)")
        self._check_sampling(noise_mode, truncation_psi)
        return self.synthesize(self.start_state(z, inject), inject)

    def images_at_lod(self, images: torch.Tensor) -> torch.Tensor:
        """Real images (B, C, R, R) -> the same level of detail as this generator's output at its
        current lod: 2x2-averaged down to the top level, faded with the level below exactly as the
        generator fades, then up-sampled back to R (the official PGGAN's treatment of reals)."""
        top, fade = self.level()
        for _ in range(self.num_blocks - 1 - top):
            images = downsample2x(images, "avgpool")
        if fade > 0:
            images = torch.lerp(images, upsample2x(downsample2x(images, "avgpool"), self.upsample_mode), fade)
        for _ in range(self.num_blocks - 1 - top):
            images = upsample2x(images, self.upsample_mode)
        return images

    @staticmethod
    def _check_sampling(noise_mode: str, truncation_psi: float) -> None:
        if noise_mode not in NOISE_MODES:
            raise RtilError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if truncation_psi != 1.0:
            raise RtilError(f"the PGGAN generator has no truncation; truncation_psi must be 1, got {truncation_psi}")


class DiscriminatorBlock(nn.Module):
    """(B, C_in, r, r) -> (B, C_out, r/2, r/2): conv3x3, lrelu, conv3x3, lrelu, down x2."""

    def __init__(self, in_channels: int, out_channels: int, downsample_mode: str):
        super().__init__()
        self.conv0 = WScaleConv2d(in_channels, in_channels, 3)
        self.conv1 = WScaleConv2d(in_channels, out_channels, 3)
        self.downsample_mode = downsample_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv0(x), 0.2)
        x = F.leaky_relu(self.conv1(x), 0.2)
        return downsample2x(x, self.downsample_mode)


class DiscriminatorEpilogue(nn.Module):
    """(B, C, 4, 4) -> logits (B, 1): minibatch stddev, conv3x3, lrelu, dense, lrelu, dense (gain 1)."""

    def __init__(self, channels: int, mbstd_group_size: int, mbstd_num_features: int):
        super().__init__()
        self.mbstd = MinibatchStdDev(mbstd_group_size, mbstd_num_features)
        self.conv = WScaleConv2d(channels + mbstd_num_features, channels, 3)
        self.fc = WScaleLinear(channels * 16, channels)
        self.out = WScaleLinear(channels, 1, gain=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv(self.mbstd(x)), 0.2)
        x = F.leaky_relu(self.fc(x.flatten(1)), 0.2)
        return self.out(x)


class Discriminator(ProgressiveGrowing, nn.Module):
    """PGGAN discriminator: image (B, img_channels, R, R) -> logits (B, 1), at its own `lod`.

    At lod with top level t (resolution r_t) the input is down-sampled to r_t, enters through
    FromRGB_t and runs blocks t..1; while fading (f = lod - floor(lod) > 0) the output of block t is
    lerped towards FromRGB_{t-1} of the input down-sampled once more, with weight f.

    Args mirror the generator's; downsample_mode 'avgpool' (official) or 'bilinear' (RTIL authors;
    the same function for x2); mbstd_group_size / mbstd_num_features configure the minibatch
    standard-deviation layer (the group must divide the per-device batch).
    """

    def __init__(self, resolution: int = 256, img_channels: int = 3, channel_base: int = 16384,
                 channel_max: int = 512, channels: dict[int, int] | None = None, downsample_mode: str = "avgpool",
                 mbstd_group_size: int = 4, mbstd_num_features: int = 1):
        super().__init__()
        check_resolution(resolution, img_channels)
        if downsample_mode not in DOWNSAMPLE_MODES:
            raise RtilError(f"downsample_mode must be one of {DOWNSAMPLE_MODES}, got {downsample_mode!r}")
        self.config = dict(resolution=resolution, img_channels=img_channels, channel_base=channel_base,
                           channel_max=channel_max,
                           channels=None if channels is None else {int(k): int(v) for k, v in channels.items()},
                           downsample_mode=downsample_mode, mbstd_group_size=mbstd_group_size,
                           mbstd_num_features=mbstd_num_features)
        self.resolution, self.img_channels = resolution, img_channels
        self.downsample_mode = downsample_mode
        ch = channel_table(resolution, channel_base, channel_max, channels)
        resolutions = list(ch)  # 4, 8, ..., R; level j works at resolutions[j]
        self.fromrgb = nn.ModuleList(WScaleConv2d(img_channels, ch[r], 1) for r in resolutions)
        self.blocks = nn.ModuleList(DiscriminatorBlock(ch[r], ch[r // 2], downsample_mode) for r in resolutions[1:])
        self.epilogue = DiscriminatorEpilogue(ch[4], mbstd_group_size, mbstd_num_features)
        self.num_blocks = len(resolutions)
        self.register_buffer("lod", torch.zeros(()))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        expected = (self.img_channels, self.resolution, self.resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise RtilError(f"discriminator expects images (B, {', '.join(map(str, expected))}), "
                            f"got {tuple(img.shape)}")
        top, fade = self.level()
        for _ in range(self.num_blocks - 1 - top):
            img = downsample2x(img, self.downsample_mode)
        x = F.leaky_relu(self.fromrgb[top](img), 0.2)
        for j in range(top, 0, -1):
            x = self.blocks[j - 1](x)  # level j -> level j - 1
            if j == top and fade > 0:
                skip = F.leaky_relu(self.fromrgb[j - 1](downsample2x(img, self.downsample_mode)), 0.2)
                x = torch.lerp(x, skip, fade)
        return self.epilogue(x)
