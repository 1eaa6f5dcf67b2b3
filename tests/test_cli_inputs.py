"""Bad input to every CLI is one line on stderr and exit status 2: option ranges (generated from the parsers, so
a new option cannot be forgotten), configs, devices, data, and the overwrite rule of every writer."""

import pytest

from rtil.config import read_yaml_file
from rtil.errors import RtilError


@pytest.mark.parametrize("text, where", [
    ("a: 1\nb: [1, 2\nc: 3\n", "line 3, column 2"),
    ("a: 1\n  b: 2\n", "line 2, column 4"),
    ('a: "x\n', "line 2, column 1"),
])
def test_invalid_yaml_is_one_line_with_file_line_and_column(tmp_path, text, where):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(RtilError) as error:
        read_yaml_file(path)
    assert str(error.value).startswith(f"{path}, {where}: not valid YAML (") and "\n" not in str(error.value)


def test_yaml_files_that_are_no_mapping_or_no_text_or_missing(tmp_path):
    (tmp_path / "list.yaml").write_text("- 1\n")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(RtilError, match="mapping at the top level"):
        read_yaml_file(tmp_path / "list.yaml")
    with pytest.raises(RtilError, match="not a text file"):
        read_yaml_file(tmp_path / "binary.yaml")
    with pytest.raises(RtilError, match="not found"):
        read_yaml_file(tmp_path / "missing.yaml")
    assert read_yaml_file(tmp_path / "empty.yaml", empty_ok=True) == {}
