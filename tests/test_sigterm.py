"""SIGTERM while training waits for data: the wait ends at once, Lightning's own handler still runs, and
the training CLI exits with status 143 and one line, even when the data source never answers."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import IterableDataset

from rtil.data import sigterm
from rtil.data.sigterm import StoppableDataLoader, TerminatedWhileReading

ROOT = Path(__file__).resolve().parent.parent


class Stuck(IterableDataset):
    """A data source that does not answer for a minute."""

    def __iter__(self):
        time.sleep(60)
        yield torch.zeros(1)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_sigterm_ends_the_wait_for_a_batch_and_runs_the_previous_handler(num_workers, monkeypatch):
    monkeypatch.setattr(sigterm, "force_exit_seconds", None)  # in a library call the process is not ended
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        loader = StoppableDataLoader(Stuck(), batch_size=1, num_workers=num_workers)
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
        t0 = time.perf_counter()
        with pytest.raises(TerminatedWhileReading, match="SIGTERM arrived while waiting for training data"):
            next(iter(loader))
        assert time.perf_counter() - t0 < 30  # not the minute the source would take
        assert received == [signal.SIGTERM]  # e.g. Lightning's flag is still set
        assert signal.getsignal(signal.SIGTERM) is not None  # and our handler is gone again:
        os.kill(os.getpid(), signal.SIGTERM)
        assert received == [signal.SIGTERM, signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_batch_arrives_unchanged_when_no_signal_comes():
    loader = StoppableDataLoader(torch.arange(6.0), batch_size=4)
    assert [b.tolist() for b in loader] == [[0, 1, 2, 3], [4, 5]]


@pytest.mark.skipif(sys.platform == "win32", reason="pipe: shard commands and SIGTERM are POSIX")
def test_training_cli_stops_on_sigterm_while_a_pipe_shard_command_hangs(tmp_path):
    marker = tmp_path / "reading"
    command = [sys.executable, str(ROOT / "train.py"), "fit", "--config", str(ROOT / "configs/stylegan2_digits.yaml"),
               "--data.dataset", "shards", "--data.path", f"pipe:touch {marker}; exec sleep 300",
               "--data.resolution", "8", "--data.batch_size", "4", "--model.init_args.channel_max", "8",
               "--model.init_args.mbstd_group_size", "2",
               "--model.init_args.rtil", "{kind: gaussian, cut_points: [1, 2]}", "--wandb", "disabled",
               "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.enable_progress_bar", "false"]
    log = tmp_path / "stderr.txt"  # a file, not a pipe: the orphaned shard command would hold a pipe open
    with open(log, "w") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():  # the shard command has started: training is waiting for it
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "training never started reading"
            time.sleep(0.2)
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the training (if still there) and its `sleep`
    err = log.read_text()
    assert proc.returncode == 143, err[-2000:]
    assert time.monotonic() - t0 < 60  # not the 300 s the command would take
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert lines and "SIGTERM arrived while waiting for training data" in lines[0]
    assert "Traceback" not in err


def test_the_training_cli_arms_the_forced_exit_only_while_it_runs(tmp_path):
    from test_train_cli import CONFIG, TINY

    from rtil.training.cli import main

    assert sigterm.force_exit_seconds is None
    main(["fit", "--config", CONFIG, *TINY, "--model.init_args.total_kimg", "0.004",
          "--trainer.default_root_dir", str(tmp_path)])
    assert sigterm.force_exit_seconds is None  # a later SIGTERM in this process is not turned into os._exit
