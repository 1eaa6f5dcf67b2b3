"""StyleGAN2 (config-F semantics) generator with cut points, and the resnet discriminator.

Generator chain (R = resolution, n = log2(R) - 1 blocks):

    z -> mapping -> W+ (B, num_ws, w_dim)
    cut 0: const (B, C4, 4, 4)
    block 0 (4x4):   conv1                  then ToRGB
    block j (4*2^j): conv0 (up x2), conv1   then ToRGB, skip image up-sampled with [1,3,3,1]

Cut point k (1 <= k <= n) holds the output of block k-1's convolutions *before* its ToRGB, so
features modified at a cut point (RTIL latents, ILO) also reach that block's ToRGB. Style index
use follows the official code: conv layer l reads ws[:, l]; block j's ToRGB reads the index of the
next block's conv0 (2j + 1), so num_ws = 2n = 2 log2(R) - 2.
"""

import math
from collections.abc import Mapping

import torch
from torch import nn

from rtil.errors import RtilError
from rtil.models.common import NOISE_MODES, channel_table, check_resolution, check_state_shape
from rtil.models.state import SynthesisState
from rtil.nn import (
    EqualConv2d,
    EqualLinear,
    MinibatchStdDev,
    at_least_float32,
    bias_leaky_relu,
    fir_filter,
    modulated_conv2d,
    normalize_2nd_moment,
    upsample2d,
)


class MappingNetwork(nn.Module):
    """z (B, z_dim) -> w (B, w_dim): 2nd-moment normalisation, then `num_layers` FC + lrelu.

    Tracks `w_avg`, the moving average of w (beta 0.995), used for truncation.
    """

    def __init__(self, z_dim: int, w_dim: int, num_layers: int = 8, lr_mul: float = 0.01,
                 w_avg_beta: float = 0.995):
        super().__init__()
        dims = [z_dim] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            EqualLinear(dims[i], dims[i + 1], lr_mul=lr_mul, activation=True) for i in range(num_layers))
        self.w_avg_beta = w_avg_beta
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, update_w_avg: bool = False) -> torch.Tensor:
        x = normalize_2nd_moment(z.to(self.w_avg.dtype))  # float32 under autocast; float64 in a float64 model
        for layer in self.layers:
            x = layer(x)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(at_least_float32(x.detach()).mean(0).lerp(self.w_avg, self.w_avg_beta))
        if truncation_psi != 1.0:
            x = self.w_avg.to(x.dtype).lerp(x, truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally up x2), noise, bias, lrelu: (B, I, H, W) -> (B, O, H', W')."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False,
                 conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.weight_gain = 1.0 / math.sqrt(in_channels * 9)
        self.up = up
        self.resolution = resolution
        if up:
            self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None, fused: bool) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        y = modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up,
                             resample_filter=getattr(self, "resample_filter", None), fused=fused,
                             noise=None if noise is None else noise * self.noise_strength)
        y = bias_leaky_relu(y, self.bias)
        return y if self.conv_clamp is None else y.clamp(-self.conv_clamp, self.conv_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation, plus bias: (B, I, H, W) -> (B, C_img, H, W)."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        y = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        y = y + self.bias.view(1, -1, 1, 1).to(y.dtype)
        return y if self.conv_clamp is None else y.clamp(-self.conv_clamp, self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: its convolutions and its ToRGB."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 conv_clamp: float | None = None):
        super().__init__()
        self.resolution = resolution
        self.is_first = resolution == 4
        if self.is_first:
            self.const = nn.Parameter(torch.randn(out_channels, 4, 4))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=True, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)

    @property
    def num_conv(self) -> int:
        return 1 if self.is_first else 2

    def convs(self, x: torch.Tensor, ws: torch.Tensor, noises: list, fused: bool) -> torch.Tensor:
        """x: block input; ws: (B, num_conv, w_dim); noises: one map (or None) per conv."""
        if not self.is_first:
            x = self.conv0(x, ws[:, 0], noises[0], fused)
        return self.conv1(x, ws[:, -1], noises[-1], fused)


class Generator(nn.Module):
    """StyleGAN2 generator: z (B, z_dim) -> image (B, img_channels, R, R), roughly in [-1, 1].

    Args:
        z_dim: input latent size.
        w_dim: intermediate latent (style) size.
        resolution: output resolution, a power of two >= 8.
        img_channels: 1 (grayscale) or 3 (RGB).
        mapping_layers: depth of the mapping network (8 in config-F).
        mapping_lr_mul: learning-rate multiplier of the mapping network (0.01).
        channel_base: channels at resolution r are min(channel_base // r, channel_max).
        channel_max: upper bound on channels per layer.
        channels: optional explicit {resolution: channels} table (overrides base/max; e.g. the
            RTIL authors' reduced table).
        conv_clamp: clamp every synthesis layer's output (after bias and activation) and every ToRGB
            output to [-conv_clamp, conv_clamp], as NVlabs' StyleGAN2-ADA does for mixed precision (256 there);
            None (default, config-F): no clamping.
    """

    family = "stylegan2"

    def __init__(self, z_dim: int = 512, w_dim: int = 512, resolution: int = 256, img_channels: int = 3,
                 mapping_layers: int = 8, mapping_lr_mul: float = 0.01, channel_base: int = 32768,
                 channel_max: int = 512, channels: dict[int, int] | None = None, conv_clamp: float | None = None):
        super().__init__()
        check_resolution(resolution, img_channels)
        if conv_clamp is not None and not conv_clamp > 0:
            raise RtilError(f"conv_clamp must be > 0 or None, got {conv_clamp}")
        self.config = dict(z_dim=z_dim, w_dim=w_dim, resolution=resolution, img_channels=img_channels,
                           mapping_layers=mapping_layers, mapping_lr_mul=mapping_lr_mul,
                           channel_base=channel_base, channel_max=channel_max,
                           channels=None if channels is None else {int(k): int(v) for k, v in channels.items()})
        if conv_clamp is not None:  # recorded only when set, so files of unclamped generators stay as they were
            self.config["conv_clamp"] = float(conv_clamp)
        self.z_dim, self.w_dim, self.resolution, self.img_channels = z_dim, w_dim, resolution, img_channels
        self.channels = channel_table(resolution, channel_base, channel_max, channels)
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, mapping_lr_mul)
        resolutions = list(self.channels)
        self.blocks = nn.ModuleList(
            SynthesisBlock(self.channels[max(r // 2, 4)], self.channels[r], w_dim, r, img_channels, conv_clamp)
            for r in resolutions)
        self.register_buffer("resample_filter", fir_filter(), persistent=False)
        self.num_blocks = len(self.blocks)
        self.num_ws = 2 * self.num_blocks
        self.num_layers = self.num_ws - 1  # modulated 3x3 conv layers (each has a noise input)

    # ---- shapes -------------------------------------------------------------------------------
    @property
    def highest_cut(self) -> int:
        """The highest cut point `synthesize` can continue from (all of them for StyleGAN2)."""
        return self.num_blocks

    def cut_shape(self, cut: int) -> tuple[int, int, int]:
        """(C, H, W) of the features at cut point `cut` (0 <= cut <= num_blocks)."""
        self._check_cut(cut)
        res = 4 * 2 ** max(cut - 1, 0)
        return (self.channels[res], res, res)

    def noise_shapes(self) -> list[tuple[int, int]]:
        """(H, W) of every layer's noise map, in layer order."""
        return [(layer.resolution, layer.resolution) for layer in self._layers()]

    def _layers(self) -> list[SynthesisLayer]:
        return [conv for b in self.blocks for conv in ([b.conv1] if b.is_first else [b.conv0, b.conv1])]

    def _check_cut(self, cut: int) -> None:
        if not 0 <= cut <= self.num_blocks:
            raise RtilError(f"cut point {cut} is out of range 0..{self.num_blocks} for this generator")

    def first_style_after(self, cut: int) -> int:
        """Index of the first W+ row (and noise map) read when synthesising from `cut`: from cut c >= 1
        the ToRGB of block c - 1 (row 2c - 1) and the blocks c.. (rows and noise maps from 2c - 1 on);
        from cut 0 everything."""
        self._check_cut(cut)
        return 0 if cut == 0 else 2 * cut - 1

    # ---- latents ------------------------------------------------------------------------------
    def styles(self, z: torch.Tensor, truncation_psi: float = 1.0, update_w_avg: bool = False) -> torch.Tensor:
        """z (B, z_dim) -> W+ (B, num_ws, w_dim), the same w for every layer."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise RtilError(f"z must have shape (B, {self.z_dim}), got {tuple(z.shape)}")
        w = self.mapping(z, truncation_psi=truncation_psi, update_w_avg=update_w_avg)
        return w[:, None, :].expand(-1, self.num_ws, -1)

    def make_noises(self, batch_size: int, noise_mode: str = "random",
                    generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Noise maps per layer: 'random' (B, 1, H, W) N(0, 1), 'const' the stored maps (1, 1, H, W),
        'none' zeros (1, 1, H, W)."""
        if noise_mode not in NOISE_MODES:
            raise RtilError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        device = self.blocks[0].conv1.weight.device
        out = []
        for layer in self._layers():
            if noise_mode == "random":
                r = layer.resolution
                out.append(torch.randn(batch_size, 1, r, r, device=device, generator=generator))
            elif noise_mode == "const":
                out.append(layer.noise_const[None, None])
            else:
                out.append(torch.zeros_like(layer.noise_const)[None, None])
        return out

    def set_const_noises(self, noises: list[torch.Tensor]) -> None:
        """Store noise maps (one per layer, (H, W) or (1, 1, H, W)) as the 'const' noise."""
        layers = self._layers()
        if len(noises) != len(layers):
            raise RtilError(f"expected {len(layers)} noise maps, got {len(noises)}")
        with torch.no_grad():
            for layer, n in zip(layers, noises, strict=True):
                layer.noise_const.copy_(n.reshape(layer.noise_const.shape))

    # ---- cut-point interface ------------------------------------------------------------------
    def start_state(self, ws: torch.Tensor, noises: list[torch.Tensor],
                    inject: Mapping[int, torch.Tensor] | None = None) -> SynthesisState:
        """The state at cut 0 for styles `ws` (B, num_ws, w_dim) and per-layer `noises`, plus inject[0]."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise RtilError(f"ws must have shape (B, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        if len(noises) != self.num_layers:
            raise RtilError(f"expected {self.num_layers} noise maps, got {len(noises)}")
        x = self.blocks[0].const[None].expand(ws.shape[0], -1, -1, -1)
        if inject is not None and 0 in inject:
            x = x + inject[0]
        return SynthesisState(x=x, cut=0, ws=ws.to(x.dtype), noises=list(noises))

    def state_at(self, cut: int, x: torch.Tensor | None, ws: torch.Tensor | None = None,
                 noises: list[torch.Tensor] | None = None, img: torch.Tensor | None = None) -> SynthesisState:
        """A checked state at `cut`: features x (B, *cut_shape(cut)) (None at cut 0, where the const input
        is used), styles ws (B, num_ws, w_dim), all noise maps, and the skip image of the blocks before the
        cut (B, img_channels, H, H) with H = 4 * 2^(cut - 2) (None up to cut 1, where no ToRGB has run)."""
        self._check_cut(cut)
        if cut == 0:
            if x is not None or img is not None:
                raise RtilError("a StyleGAN2 state at cut 0 starts from the const input: pass x=None and img=None")
            return self.start_state(ws, noises)
        check_state_shape("features", x, self.cut_shape(cut), cut)
        check_state_shape("ws", ws, (self.num_ws, self.w_dim), cut)
        if noises is None or len(noises) != self.num_layers:
            raise RtilError(f"expected {self.num_layers} noise maps, got {None if noises is None else len(noises)}")
        if cut == 1:
            if img is not None:
                raise RtilError("no ToRGB has run before cut 1: the skip image must be None")
        else:
            check_state_shape("skip image", img, (self.img_channels, *self.cut_shape(cut - 1)[1:]), cut)
        return SynthesisState(x=x, cut=cut, ws=ws.to(x.dtype), noises=list(noises), img=img)

    def advance(self, state: SynthesisState, upto: int, inject: Mapping[int, torch.Tensor] | None = None,
                fused: bool = False) -> SynthesisState:
        """Run from `state.cut` to cut point `upto`, adding `inject[k]` to the features at every
        cut point k reached on the way (state.cut < k <= upto). `fused` selects the grouped-conv
        form of the modulated convolutions; the default shared-weight form is the same function and
        measured ~20% faster forward+backward on CPU at batch 1 and 16."""
        self._check_cut(upto)
        if upto < state.cut:
            raise RtilError(f"cannot advance backwards from cut {state.cut} to {upto}")
        x, img = state.x, state.img
        for k in range(state.cut, upto):
            if k >= 1:
                img = self._add_rgb(img, x, k - 1, state.ws, fused)
            x = self._block_convs(k, x, state.ws, state.noises, fused)
            if inject is not None and (k + 1) in inject:
                x = x + inject[k + 1]
        return SynthesisState(x=x, cut=upto, ws=state.ws, noises=state.noises, img=img)

    def synthesize(self, state: SynthesisState, inject: Mapping[int, torch.Tensor] | None = None,
                   fused: bool = False) -> torch.Tensor:
        """Continue from `state` to the image (B, img_channels, R, R)."""
        end = self.advance(state, self.num_blocks, inject, fused)
        return self._add_rgb(end.img, end.x, self.num_blocks - 1, end.ws, fused)

    def features(self, z: torch.Tensor, upto: int, noise_mode: str = "random", truncation_psi: float = 1.0,
                 generator: torch.Generator | None = None,
                 inject: Mapping[int, torch.Tensor] | None = None) -> SynthesisState:
        """The state at cut point `upto` for latents z (B, z_dim)."""
        ws = self.styles(z, truncation_psi)
        state = self.start_state(ws, self.make_noises(z.shape[0], noise_mode, generator), inject)
        return self.advance(state, upto, inject)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: str = "random",
                inject: Mapping[int, torch.Tensor] | None = None, generator: torch.Generator | None = None,
                update_w_avg: bool = False, ws: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, z_dim) -> image (B, img_channels, R, R). `inject` maps cut points to tensors added
        to the features there (RTIL latents); `ws` overrides the mapped styles (style mixing)."""
        if ws is None:
            ws = self.styles(z, truncation_psi, update_w_avg)
        state = self.start_state(ws, self.make_noises(ws.shape[0], noise_mode, generator), inject)
        return self.synthesize(state, inject)

    def _block_convs(self, j: int, x, ws, noises, fused):
        block = self.blocks[j]
        first_layer = self.first_style_after(j)  # block j runs from cut j
        n = block.num_conv
        return block.convs(x, ws[:, first_layer:first_layer + n], noises[first_layer:first_layer + n], fused)

    def _add_rgb(self, img, x, j: int, ws, fused):
        y = self.blocks[j].torgb(x, ws[:, self.first_style_after(j + 1)], fused)  # the row cut j + 1 starts at
        if img is None:
            return at_least_float32(y)
        return upsample2d(img, self.resample_filter) + at_least_float32(y)


class DiscriminatorBlock(nn.Module):
    """Resnet block: two 3x3 convs (the second halves the resolution) plus a 1x1 skip, / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation=True)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activation=True, down=True)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv1(self.conv0(x)) + self.skip(x)) * (1 / math.sqrt(2))


class Discriminator(nn.Module):
    """StyleGAN2 resnet discriminator: image (B, img_channels, R, R) in [-1, 1] -> logits (B, 1).

    Args mirror the generator's; mbstd_group_size / mbstd_num_features configure the minibatch
    standard-deviation layer (the group must divide the per-device batch).
    """

    def __init__(self, resolution: int = 256, img_channels: int = 3, channel_base: int = 32768,
                 channel_max: int = 512, channels: dict[int, int] | None = None,
                 mbstd_group_size: int = 4, mbstd_num_features: int = 1):
        super().__init__()
        check_resolution(resolution, img_channels)
        self.config = dict(resolution=resolution, img_channels=img_channels, channel_base=channel_base,
                           channel_max=channel_max,
                           channels=None if channels is None else {int(k): int(v) for k, v in channels.items()},
                           mbstd_group_size=mbstd_group_size, mbstd_num_features=mbstd_num_features)
        self.resolution, self.img_channels = resolution, img_channels
        ch = channel_table(resolution, channel_base, channel_max, channels)
        self.fromrgb = EqualConv2d(img_channels, ch[resolution], 1, activation=True)
        self.blocks = nn.ModuleList(DiscriminatorBlock(ch[r], ch[r // 2]) for r in reversed(ch) if r > 4)
        self.mbstd = MinibatchStdDev(mbstd_group_size, mbstd_num_features)
        self.conv = EqualConv2d(ch[4] + mbstd_num_features, ch[4], 3, activation=True)
        self.fc = EqualLinear(ch[4] * 16, ch[4], activation=True)
        self.out = EqualLinear(ch[4], 1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        expected = (self.img_channels, self.resolution, self.resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise RtilError(f"discriminator expects images (B, {', '.join(map(str, expected))}), "
                            f"got {tuple(img.shape)}")
        x = self.fromrgb(img)
        for block in self.blocks:
            x = block(x)
        x = self.conv(self.mbstd(x))
        return self.out(self.fc(x.flatten(1)))
