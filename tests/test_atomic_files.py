import json
import threading

from rtil.atomic_files import write_json_atomically


def test_concurrent_writers_of_one_file_never_fail_or_leave_temporary_files(tmp_path):
    """Two ranks of a torchrun sweep write the same JSON at the same moment: each write must succeed
    and the file must always hold one complete version."""
    path = tmp_path / "config.json"
    errors = []

    def writer(k):
        try:
            for i in range(200):
                write_json_atomically(path, {"writer": k, "i": i, "pad": "x" * 1000})
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert json.loads(path.read_text())["i"] == 199
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_images_and_figures_are_written_atomically(tmp_path):
    """A PNG or figure that fails half-way leaves the earlier file as it was and no temporary file behind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pytest
    import torch
    from PIL import Image

    from rtil.atomic_files import save_figure_atomically, save_image_atomically

    png = tmp_path / "grid.png"
    save_image_atomically(torch.rand(4, 3, 8, 8), png, nrow=2)
    with Image.open(png) as grid:
        assert grid.size == (2 * 8 + 3 * 2, 2 * 8 + 3 * 2)  # padding 2 around and between the tiles
    before = png.read_bytes()
    with pytest.raises(TypeError):  # fails inside the write
        save_image_atomically(torch.rand(4, 3, 8, 8), png, nrow=2, not_an_option=1)
    assert png.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    save_figure_atomically(fig, tmp_path / "curve.pdf", metadata={"CreationDate": None})
    plt.close(fig)
    assert (tmp_path / "curve.pdf").read_bytes().startswith(b"%PDF")
