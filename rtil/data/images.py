"""The images to reconstruct: the built-in test digits or a folder of images of the generator's size."""

from pathlib import Path

import torch

from rtil.errors import RtilError

DIGITS_TEST = "digits-test"


def load_images(source: str | Path, resolution: int, channels: int, num_images: int | None = None
                ) -> tuple[torch.Tensor, list[str]]:
    """The first `num_images` (default all) images of `source`, (N, channels, resolution, resolution) in [-1, 1],
    and their names. source: "digits-test" (the built-in test digits at that size and channels) or a folder of
    images, which must already have that size and channels (no silent resizing or conversion)."""
    if num_images is not None and num_images < 1:
        raise RtilError(f"the number of images must be >= 1, got {num_images}")
    if str(source) == DIGITS_TEST:
        from rtil.data.digits import digits_test_images

        images = digits_test_images(resolution, channels)[:num_images]
        return images, [f"{DIGITS_TEST}/{i}" for i in range(images.shape[0])]

    from rtil.data.folder import UNREADABLE_IMAGE_ERRORS, find_image_files, image_to_tensor, open_image

    files = find_image_files(source)[:num_images]
    tensors = []
    for f in files:
        try:
            img = open_image(f)
        except UNREADABLE_IMAGE_ERRORS as e:
            raise RtilError(f"cannot read image {f}: {e}") from None
        found = 1 if img.mode == "L" else 3
        if img.size != (resolution, resolution) or found != channels:
            raise RtilError(f"image {f} is {img.size[0]}x{img.size[1]} with {found} channel(s), but the generator "
                            f"makes {resolution}x{resolution} images with {channels} channel(s); "
                            f"resize/convert the images first")
        tensors.append(image_to_tensor(img))
    return torch.stack(tensors), [str(Path(f).relative_to(source)) for f in files]
