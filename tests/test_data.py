"""Data pipeline: digits, image folders, webdataset shards (round trip, rank/worker splits, seeds), datamodule."""

import io
import warnings
from itertools import islice

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from rtil.data import (
    DigitsDataset,
    FolderDataset,
    brace_pattern,
    digits_images,
    digits_test_images,
    find_image_files,
    shard_dataset,
    shards_main,
    write_shards,
)
from rtil.data.datamodule import GanDataModule
from rtil.data.sampler import InfiniteSampler
from rtil.errors import RtilError


def random_image(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    """A Pillow image of random pixels; (width, height) = size."""
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (size[1], size[0], channels), generator=gen, dtype=torch.uint8)
    return Image.fromarray(pixels.squeeze(-1).numpy(), mode)


def png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def clean_folder(tmp_path):
    """10 readable images: RGB, gray, RGBA, non-square, nested, JPEG/BMP/TIFF, upper-case extensions,
    plus files that must be ignored (text, hidden)."""
    root = tmp_path / "clean"
    (root / "sub" / "deeper").mkdir(parents=True)
    specs = [("rgb0.png", "RGB", (8, 8)), ("gray.png", "L", (8, 8)), ("rgba.png", "RGBA", (8, 8)),
             ("wide.png", "RGB", (12, 8)), ("tall.PNG", "RGB", (8, 11)), ("sub/photo.JPG", "RGB", (10, 10)),
             ("sub/b.bmp", "RGB", (8, 8)), ("sub/deeper/c.tiff", "RGB", (8, 8)), ("sub/deeper/d.jpeg", "L", (9, 9)),
             ("z.png", "RGB", (16, 16))]
    for seed, (name, mode, size) in enumerate(specs):
        random_image(mode, size, seed).save(root / name)
    (root / "notes.txt").write_text("not an image")
    random_image("RGB", (8, 8), 99).save(root / ".hidden.png")
    return root


@pytest.fixture
def folder_with_bad_files(tmp_path):
    """3 readable images, one truncated PNG and one JPEG of garbage bytes."""
    root = tmp_path / "mixed"
    (root / "sub").mkdir(parents=True)
    for i, mode in enumerate(["RGB", "L", "RGBA"]):
        random_image(mode, (8, 8), i).save(root / f"ok{i}.png")
    whole = png_bytes(random_image("RGB", (32, 32), 5))
    (root / "sub" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (root / "garbage.jpg").write_bytes(b"\x00 definitely not a jpeg" * 10)
    return root


def stream(dataset, n=None) -> torch.Tensor:
    return torch.stack(list(islice(iter(dataset), n)))


def positions(images: torch.Tensor, reference: torch.Tensor) -> list[int]:
    """For each image, the index of the exactly equal image in `reference`."""
    matches = [[j for j in range(len(reference)) if torch.equal(image, reference[j])] for image in images]
    assert all(len(m) == 1 for m in matches)
    return [m[0] for m in matches]


# digits

def test_digits_split_shapes_and_range():
    train, test = digits_images("train", 8), digits_test_images(8)
    assert train.shape == (1500, 1, 8, 8) and test.shape == (297, 1, 8, 8)
    assert train.min() == -1 and train.max() == 1 and test.min() == -1 and test.max() == 1


def test_digits_holdout_is_left_out_of_training_and_is_the_validation_split():
    from rtil.data.digits import digits_images, digits_validation_images

    train = digits_images("train", 8)
    data = DigitsDataset("train", 8, holdout=100)
    assert len(data) == 1400 and torch.equal(data.images, train[:1400])
    assert torch.equal(digits_validation_images(100, 8), train[1400:])
    with pytest.raises(RtilError, match="holdout must be in"):
        DigitsDataset("train", 8, holdout=1500)
    with pytest.raises(RtilError, match="validation split is empty"):
        digits_validation_images(0, 8)
    with pytest.raises(RtilError, match="only"):
        GanDataModule(dataset="folder", path=".", holdout=5)
    module = GanDataModule(resolution=8, holdout=100, batch_size=4)
    module.setup()
    assert len(module.train_dataset) == 1400 and module.describe()["holdout"] == 100


def test_digits_resampling_and_rgb_replication():
    gray = digits_test_images(32, 1)
    rgb = digits_test_images(32, 3)
    assert gray.shape == (297, 1, 32, 32) and rgb.shape == (297, 3, 32, 32)
    assert gray.min() >= -1 and gray.max() <= 1 and gray.std() > 0.3
    assert torch.equal(rgb, gray.expand(-1, 3, -1, -1))
    assert digits_test_images(4).shape == (297, 1, 4, 4)
    with pytest.raises(RtilError, match="channels"):
        digits_test_images(32, 2)


def test_digits_dataset_flip_is_off_by_default_and_doubles_when_on():
    assert len(DigitsDataset("train", 8)) == 1500
    flipped = DigitsDataset("test", 8, flip=True)
    assert len(flipped) == 2 * 297
    assert torch.equal(flipped[297 + 5], flipped[5].flip(-1))


# image folders

def test_folder_finds_images_recursively_and_converts(clean_folder):
    files = find_image_files(clean_folder)
    assert len(files) == 10 and files == sorted(files)
    assert all(not f.name.startswith(".") and f.suffix != ".txt" for f in files)
    for channels in (1, 3):
        ds = FolderDataset(clean_folder, resolution=16, channels=channels)
        images = torch.stack([ds[i] for i in range(len(ds))])
        assert images.shape == (10, channels, 16, 16)
        assert images.min() >= -1 and images.max() <= 1 and ds.num_skipped == 0
    gray_as_rgb = FolderDataset(clean_folder, resolution=8, channels=3)[files.index(clean_folder / "gray.png")]
    assert torch.equal(gray_as_rgb[0], gray_as_rgb[1]) and torch.equal(gray_as_rgb[0], gray_as_rgb[2])


def test_folder_center_crops_the_shorter_side(tmp_path):
    # 12x8: a 2-pixel black border left and right of an 8x8 white square
    img = Image.new("L", (12, 8))
    img.paste(255, (2, 0, 10, 8))
    img.save(tmp_path / "wide.png")
    image = FolderDataset(tmp_path, resolution=8, channels=1)[0]
    assert torch.equal(image, torch.ones(1, 8, 8))


def test_folder_flip_appends_mirror_images(clean_folder):
    ds = FolderDataset(clean_folder, resolution=8, flip=True)
    assert len(ds) == 20
    assert torch.equal(ds[13], ds[3].flip(-1))


def test_folder_skips_unreadable_files_with_warning_and_count(folder_with_bad_files):
    ds = FolderDataset(folder_with_bad_files, resolution=8, channels=3)
    assert len(ds) == 5
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        images = [ds[i] for i in range(len(ds))]
    assert ds.num_skipped == 2
    assert {f.name for f in ds.skipped_files} == {"truncated.png", "garbage.jpg"}
    assert all(image.shape == (3, 8, 8) for image in images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known bad files are skipped silently afterwards
        [ds[i] for i in range(len(ds))]
    assert ds.num_skipped == 2


def test_folder_skip_count_is_shared_with_worker_processes(folder_with_bad_files):
    ds = FolderDataset(folder_with_bad_files, resolution=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(DataLoader(ds, batch_size=1, num_workers=2))
    assert len(batches) == 5 and ds.num_skipped == 2


def test_folder_errors_name_the_path_and_extensions(tmp_path):
    with pytest.raises(RtilError, match="does not exist"):
        FolderDataset(tmp_path / "nope", resolution=8)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("x")
    with pytest.raises(RtilError, match=r"no images in .*empty.*\.png.*\.jpeg.*\.webp"):
        FolderDataset(tmp_path / "empty", resolution=8)
    with pytest.raises(RtilError, match="not a folder"):
        FolderDataset(tmp_path / "empty" / "sub" / "readme.txt", resolution=8)


# shards

def test_shards_round_trip_is_pixel_equal_to_the_folder(clean_folder, tmp_path):
    paths = write_shards(clean_folder, str(tmp_path / "shards" / "s-%04d.tar"), max_per_shard=3, progress=False)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["s-0000.tar", "s-0001.tar", "s-0002.tar", "s-0003.tar"]
    pattern = brace_pattern(str(tmp_path / "shards" / "s-%04d.tar"), len(paths))
    assert pattern.endswith("s-{0000..0003}.tar")
    for channels in (1, 3):
        folder = FolderDataset(clean_folder, resolution=8, channels=channels)
        expected = torch.stack([folder[i] for i in range(len(folder))])
        read = stream(shard_dataset(pattern, resolution=8, channels=channels, resampled=False, shuffle=False))
        assert torch.equal(read, expected)


def test_shards_written_at_a_resolution_match_the_folder_at_that_resolution(clean_folder, tmp_path):
    paths = write_shards(clean_folder, str(tmp_path / "r-%02d.tar"), resolution=8, progress=False)
    assert len(paths) == 1
    with Image.open(clean_folder / "wide.png") as original:
        assert original.size == (12, 8)
    folder = FolderDataset(clean_folder, resolution=8)
    read = stream(shard_dataset(paths, resolution=8, resampled=False, shuffle=False))
    assert torch.equal(read, torch.stack([folder[i] for i in range(10)]))


def test_write_shards_skips_unreadable_images_and_counts_them(folder_with_bad_files, tmp_path):
    with pytest.warns(UserWarning) as caught:
        paths = write_shards(folder_with_bad_files, str(tmp_path / "m-%03d.tar"), progress=False)
    messages = [str(w.message) for w in caught]
    assert sum(m.startswith("skipping unreadable image") for m in messages) == 2
    assert any("skipped 2 unreadable of 5" in m for m in messages)
    assert len(stream(shard_dataset(paths, resolution=8, resampled=False))) == 3


def test_write_shards_errors(tmp_path, clean_folder):
    with pytest.raises(RtilError, match="printf"):
        write_shards(clean_folder, str(tmp_path / "no-field.tar"))
    with pytest.raises(RtilError, match="does not exist"):
        write_shards(tmp_path / "nope", str(tmp_path / "x-%03d.tar"))
    with pytest.raises(RtilError, match="shard files do not exist"):
        shard_dataset(str(tmp_path / "x-{000..003}.tar"), resolution=8)


def test_shards_split_disjointly_and_completely_across_ranks_and_workers(clean_folder, tmp_path, monkeypatch):
    # webdataset's split_by_node reads RANK/WORLD_SIZE (else torch.distributed), split_by_worker
    # reads WORKER/NUM_WORKERS (else the DataLoader's worker info)
    paths = write_shards(clean_folder, str(tmp_path / "s-%02d.tar"), max_per_shard=3, progress=False)
    folder = FolderDataset(clean_folder, resolution=8)
    reference = torch.stack([folder[i] for i in range(len(folder))])
    for num_workers in (1, 2):
        seen = []
        for rank in range(2):
            for worker in range(num_workers):
                monkeypatch.setenv("RANK", str(rank))
                monkeypatch.setenv("WORLD_SIZE", "2")
                monkeypatch.setenv("WORKER", str(worker))
                monkeypatch.setenv("NUM_WORKERS", str(num_workers))
                read = stream(shard_dataset(paths, resolution=8, seed=7, resampled=False, shuffle=True))
                assert len(read) > 0
                seen += positions(read, reference)
        assert sorted(seen) == list(range(10))


def test_resampled_shards_are_deterministic_under_a_seed(clean_folder, tmp_path, monkeypatch):
    paths = write_shards(clean_folder, str(tmp_path / "s-%02d.tar"), max_per_shard=3, progress=False)

    def first(seed, n=25):
        return stream(shard_dataset(paths, resolution=8, seed=seed, resampled=True, shuffle_buffer=8), n)

    a, b, c = first(3), first(3), first(4)
    assert a.shape == (25, 3, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not torch.equal(first(3), a)  # each rank draws its own stream


def test_shards_flip_follows_every_image_with_its_mirror(clean_folder, tmp_path):
    paths = write_shards(clean_folder, str(tmp_path / "s-%02d.tar"), progress=False)
    read = stream(shard_dataset(paths, resolution=8, resampled=False, shuffle=False, flip=True))
    assert len(read) == 20 and torch.equal(read[1], read[0].flip(-1))


def test_shards_main(clean_folder, tmp_path, capsys):
    assert shards_main([str(clean_folder), str(tmp_path / "cli-%03d.tar"), "--resolution", "8",
                        "--max-per-shard", "4"]) == 0
    assert "wrote 3 shards" in capsys.readouterr().out and (tmp_path / "cli-002.tar").is_file()
    assert shards_main([str(tmp_path / "nope"), str(tmp_path / "cli-%03d.tar")]) == 2
    assert "error:" in capsys.readouterr().err


# datamodule

def test_datamodule_digits_batches_and_test_images():
    dm = GanDataModule(resolution=16, batch_size=8, seed=1)
    loader = dm.train_dataloader()
    batch = next(iter(loader))
    assert batch.shape == (8, 1, 16, 16) and batch.dtype == torch.float32
    assert batch.min() >= -1 and batch.max() <= 1
    assert torch.equal(batch, next(iter(GanDataModule(resolution=16, batch_size=8, seed=1).train_dataloader())))
    assert not torch.equal(batch, next(iter(GanDataModule(resolution=16, batch_size=8, seed=2).train_dataloader())))
    assert dm.test_images().shape == (297, 1, 16, 16) and dm.num_skipped == 0


def test_datamodule_folder_and_shards(clean_folder, tmp_path):
    dm = GanDataModule("folder", str(clean_folder), resolution=8, channels=3, batch_size=4, flip=True)
    assert next(iter(dm.train_dataloader())).shape == (4, 3, 8, 8)
    paths = write_shards(clean_folder, str(tmp_path / "s-%02d.tar"), max_per_shard=3, progress=False)
    pattern = brace_pattern(str(tmp_path / "s-%02d.tar"), len(paths))
    dm = GanDataModule("shards", pattern, resolution=8, channels=3, batch_size=6, shuffle_buffer=8)
    batches = list(islice(iter(dm.train_dataloader()), 3))  # resampled: endless
    assert all(b.shape == (6, 3, 8, 8) and b.min() >= -1 and b.max() <= 1 for b in batches)
    with pytest.raises(RtilError, match="only for dataset='digits'"):
        dm.test_images()


def test_datamodule_rejects_bad_arguments_at_construction(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RtilError, match="does not exist"):
        GanDataModule("folder", str(tmp_path / "nope"))
    with pytest.raises(RtilError, match="no images in"):
        GanDataModule("folder", str(tmp_path / "empty"))
    with pytest.raises(RtilError, match="needs a path"):
        GanDataModule("shards")
    with pytest.raises(RtilError, match="shard files do not exist"):
        GanDataModule("shards", str(tmp_path / "s-{00..03}.tar"))
    with pytest.raises(RtilError, match="not used with dataset='digits'"):
        GanDataModule("digits", str(tmp_path))
    with pytest.raises(RtilError, match="power of two"):
        GanDataModule(resolution=24)
    with pytest.raises(RtilError, match="dataset must be one of"):
        GanDataModule("imagenet")


def test_infinite_sampler_passes_ranks_and_resume():
    n = 10
    sampler = InfiniteSampler(n, seed=3)
    stream = list(islice(iter(sampler), 3 * n))
    for p in range(3):  # every pass is a permutation, and passes differ
        assert sorted(stream[p * n:(p + 1) * n]) == list(range(n))
    assert stream[:n] != stream[n:2 * n]
    # Starting at position s continues the same stream.
    assert list(islice(iter(InfiniteSampler(n, seed=3, start=7)), 13)) == stream[7:20]
    # Two ranks split the global stream: disjoint within a pass, together complete.
    r0 = list(islice(iter(InfiniteSampler(n, seed=3, rank=0, world_size=2)), n // 2))
    r1 = list(islice(iter(InfiniteSampler(n, seed=3, rank=1, world_size=2)), n // 2))
    assert sorted(r0 + r1) == list(range(n)) and r0 == stream[0:n:2] and r1 == stream[1:n:2]
    assert list(islice(iter(InfiniteSampler(n, shuffle=False)), 12)) == list(range(10)) + [0, 1]


def test_datamodule_resumes_its_order_from_state():
    full = GanDataModule(resolution=8, batch_size=4, seed=5).train_dataloader()
    batches = list(islice(iter(full), 5))
    resumed = GanDataModule(resolution=8, batch_size=4, seed=5)
    resumed.load_state_dict({"iteration": 3})
    later = list(islice(iter(resumed.train_dataloader()), 2))
    assert torch.equal(later[0], batches[3]) and torch.equal(later[1], batches[4])


def test_high_bit_depth_gray_images_are_rescaled_not_clipped(tmp_path):
    import numpy as np

    from rtil.data.folder import open_image

    sixteen = (np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)  # 0..63000 of 65535
    Image.fromarray(sixteen).save(tmp_path / "a.png")
    floats = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(floats, mode="F").save(tmp_path / "b.tif")
    a = np.array(open_image(tmp_path / "a.png", 1)).astype(float)
    b = np.array(open_image(tmp_path / "b.tif", 1)).astype(float)
    assert np.abs(a - sixteen / 65535 * 255).max() <= 0.5 and a.max() < 250  # today: white (255) almost everywhere
    assert np.abs(b - floats * 255).max() <= 0.5 and b.max() == 255  # today: black (0 or 1)
    Image.fromarray(np.full((8, 8), -3.0, dtype=np.float32), mode="F").save(tmp_path / "c.tif")
    with pytest.raises(ValueError, match="neither 0..1 nor 0..255"):
        open_image(tmp_path / "c.tif", 1)


def test_a_symlink_loop_is_followed_once(tmp_path):
    import os

    from rtil.data.folder import find_image_files

    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/x.png", "d/sub/y.png"):
        Image.new("L", (4, 4)).save(tmp_path / name)
    os.symlink(tmp_path / "d", tmp_path / "d" / "sub" / "loop")
    assert [p.name for p in find_image_files(tmp_path / "d")] == ["y.png", "x.png"]


@pytest.mark.parametrize("resampled", [True, False])
def test_all_corrupt_shards_stop_with_an_error_instead_of_looping(tmp_path, resampled):
    import tarfile

    for i in range(3):
        (tmp_path / f"bad-{i}.tar").write_bytes(b"not a tar file at all" * 50)
    with tarfile.open(tmp_path / "bad-3.tar", "w") as tar:  # a real tar whose images are garbage
        for k in range(60):
            data = io.BytesIO(b"garbage")
            info = tarfile.TarInfo(f"{k:08d}.png")
            info.size = len(data.getvalue())
            tar.addfile(info, data)
    dataset = shard_dataset(str(tmp_path / "bad-{0..3}.tar"), resolution=8, channels=1, resampled=resampled)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(RtilError, match="in a row"):
            list(islice(iter(dataset), 5))
