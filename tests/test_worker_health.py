from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from workers.main import heartbeat_age_s, start_heartbeat


def test_heartbeat_is_written_while_healthy(tmp_path: Path) -> None:
    path = tmp_path / "beat"
    stop = start_heartbeat(path, lambda: True)
    age = heartbeat_age_s(path)
    assert age is not None
    assert age < 5
    stop.set()
    assert heartbeat_age_s(tmp_path / "missing") is None


def test_worker_alive_probe(tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    env = {**os.environ, "RAGKB_WORKER__HEARTBEAT_FILE": str(beat)}
    ragkb = str(Path(sys.executable).with_name("ragkb"))

    def probe() -> int:
        return subprocess.run(
            [ragkb, "worker-alive", "--max-age-s", "60"], env=env, capture_output=True, check=False
        ).returncode

    assert probe() == 1  # no heartbeat yet
    beat.touch()
    assert probe() == 0
    stale = time.time() - 120
    os.utime(beat, (stale, stale))
    assert probe() == 1
