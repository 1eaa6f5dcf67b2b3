"""Validation and test images held out of a training image folder (rtil/data/split.py), and the training data module
leaving them out (GanDataModule's `exclude`)."""

from pathlib import Path

import pytest
from PIL import Image

from rtil.data.datamodule import GanDataModule
from rtil.data.digits import save_digits_images
from rtil.data.folder import FolderDataset
from rtil.data.split import EXCLUDE_FILE, SPLIT_FILE, split_image_folder, split_summary
from rtil.errors import RtilError


def digits_folder(folder: Path, count: int = 40, resolution: int = 16) -> Path:
    """`count` test digits as gray PNGs, half of them in a subfolder."""
    files = save_digits_images(folder, "test", resolution, count)
    (folder / "more").mkdir()
    for f in files[count // 2:]:
        f.rename(folder / "more" / f.name)
    return folder


def size_and_mode(path: Path) -> tuple:
    with Image.open(path) as img:
        return img.size, img.mode


def split(folder, out, **kw):
    args = dict(resolution=16, channels=1, validation=5, test=10, min_train=4)
    return split_image_folder(folder, out, **{**args, **kw})


def test_held_out_images_are_never_training_images(tmp_path):
    folder = digits_folder(tmp_path / "images")
    record = split(folder, tmp_path / "out")
    held = {i["source"] for part in ("validation", "test") for i in record["images"][part]}
    assert len(held) == 15 and record["train_images"] == 25
    assert (tmp_path / "out" / EXCLUDE_FILE).read_text().split() == [
        i["source"] for part in ("validation", "test") for i in record["images"][part]]
    training = FolderDataset(folder, 16, 1, exclude=tmp_path / "out" / EXCLUDE_FILE)
    assert len(training) == 25
    assert not {f.relative_to(folder).as_posix() for f in training.files} & held
    module = GanDataModule(dataset="folder", path=str(folder), resolution=16, channels=1, batch_size=4,
                           exclude=str(tmp_path / "out" / EXCLUDE_FILE))
    module.setup()
    assert len(module.train_dataset) == 25 and module.describe()["excluded"] == 15
    # the held-out copies: the generator's size and channels, named in the split's order
    for part, count in (("validation", 5), ("test", 10)):
        files = sorted((tmp_path / "out" / "images" / part).iterdir())
        assert [f"images/{part}/{f.name}" for f in files] == [i["file"] for i in record["images"][part]]
        assert len(files) == count and size_and_mode(files[0]) == ((16, 16), "L")
    assert "held out 5 validation images" in split_summary(record) and "resized" not in split_summary(record)


def test_the_split_is_deterministic_and_a_rerun_reuses_it(tmp_path):
    folder = digits_folder(tmp_path / "images")
    first = split(folder, tmp_path / "a")
    assert split(folder, tmp_path / "b")["images"] == first["images"]  # the same choice elsewhere
    assert split(folder, tmp_path / "a") == first  # found in its folder
    assert split(folder, tmp_path / "c", seed=1)["images"] != first["images"]
    with pytest.raises(RtilError, match="holds a split made with test 10, not 12; use the same settings"):
        split(folder, tmp_path / "a", test=12)


def test_images_of_another_size_are_resized_and_said_so(tmp_path):
    folder = digits_folder(tmp_path / "images", resolution=32)
    record = split(folder, tmp_path / "out")
    assert record["resized"] == {"32x32": 15}
    assert "resized to 16x16 (center crop, as training reads them): 15 from 32x32" in split_summary(record)
    assert size_and_mode(tmp_path / "out" / record["images"]["test"][0]["file"]) == ((16, 16), "L")


def test_a_separate_test_folder_leaves_only_validation_out_of_training(tmp_path):
    folder = digits_folder(tmp_path / "images")
    tests = digits_folder(tmp_path / "tests", count=12)
    record = split(folder, tmp_path / "out", test_folder=tests)
    assert record["train_images"] == 35 and len(record["images"]["test"]) == 10
    assert len((tmp_path / "out" / EXCLUDE_FILE).read_text().split()) == 5
    with pytest.raises(RtilError, match="overlap; the test images must not be training images"):
        split(folder, tmp_path / "other", test_folder=folder / "more")
    with pytest.raises(RtilError, match="has 12 images, fewer than the 20 asked for"):
        split(folder, tmp_path / "third", test=20, test_folder=tests)


@pytest.mark.parametrize("case, message", [
    ("empty", "no images in"),
    ("missing", "does not exist"),
    ("too small", r"has 18 images: too few to hold out 15 \(validation 5, test 10\) and keep 4 \(one batch\)"),
    ("colour", "is colour (3 channels), but the generator makes gray (1 channel) images"),
    ("gray", "is gray (1 channel), but the generator makes colour (3 channels) images"),
])
def test_bad_folders_are_one_line_errors(tmp_path, case, message):
    folder = tmp_path / "images"
    channels = 1
    if case == "empty":
        folder.mkdir()
    elif case == "too small":
        digits_folder(folder, count=18)
    elif case == "colour":
        digits_folder(folder)
        for f in folder.rglob("*.png"):
            with Image.open(f) as img:
                colour = img.convert("RGB")
            colour.save(f)
    elif case == "gray":
        digits_folder(folder)
        channels = 3
    with pytest.raises(RtilError, match=message.replace("(", r"\(").replace(")", r"\)")
                       if case in ("colour", "gray") else message) as error:
        split(folder, tmp_path / "out", channels=channels)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out" / SPLIT_FILE).exists()


def test_an_exclude_list_of_other_files_is_refused(tmp_path):
    folder = digits_folder(tmp_path / "images")
    other = tmp_path / "other.txt"
    other.write_text("elsewhere/x.png\n")
    with pytest.raises(RtilError, match="names 1 file\\(s\\) that are not images of"):
        GanDataModule(dataset="folder", path=str(folder), resolution=16, channels=1, exclude=str(other))
    everything = tmp_path / "all.txt"
    everything.write_text("".join(f"{f.relative_to(folder).as_posix()}\n" for f in folder.rglob("*.png")))
    with pytest.raises(RtilError, match="leaves out every image"):
        FolderDataset(folder, 16, 1, exclude=everything)
    with pytest.raises(RtilError, match="exclude is for image folders only"):
        GanDataModule(exclude=str(other))
