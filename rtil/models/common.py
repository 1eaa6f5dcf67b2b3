"""What both generator families share: channel tables, the resolution check and the noise modes."""

import math
from collections.abc import Mapping

from rtil.errors import RtilError

NOISE_MODES = ("random", "const", "none")


def channel_table(resolution: int, channel_base: int, channel_max: int,
                  channels: Mapping[int, int] | None = None) -> dict[int, int]:
    """Channels per resolution 4..R: `channels[res]` if given, else min(channel_base // res, channel_max)."""
    out = {}
    for res in (2 ** i for i in range(2, int(math.log2(resolution)) + 1)):
        if channels is not None:
            if res not in channels and str(res) not in channels:
                raise RtilError(f"channel table {dict(channels)} has no entry for resolution {res}")
            out[res] = int(channels[res] if res in channels else channels[str(res)])
        else:
            out[res] = min(channel_base // res, channel_max)
    return out


def check_resolution(resolution: int, img_channels: int) -> None:
    if resolution < 8 or resolution & (resolution - 1):
        raise RtilError(f"resolution must be a power of two >= 8, got {resolution}")
    if img_channels not in (1, 3):
        raise RtilError(f"img_channels must be 1 or 3, got {img_channels}")


def check_state_shape(name: str, x, expected: tuple[int, ...], cut: int) -> None:
    """Raise unless x is (B, *expected)."""
    if x is None or tuple(x.shape[1:]) != tuple(expected):
        got = None if x is None else tuple(x.shape)
        raise RtilError(f"{name} at cut {cut} must have shape (B, {', '.join(map(str, expected))}), got {got}")
