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
