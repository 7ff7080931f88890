"""Shows that a change of structure left every published number byte for byte as it was.

Runs the embedded demo and the hand-made worlds of the test suite, and hashes what a run
publishes: ``villages.parquet`` and every ``tables/*.csv``. ``record`` writes the hashes to a
JSON file; ``check`` runs again and compares, printing every file that differs (exit 1).

    python bench/same_tables.py record bench/same_tables.json   # before a renovation
    python bench/same_tables.py check bench/same_tables.json    # after it

Every run happens in a fresh process through the ``ruralcov`` command, as a user would run it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _ruralcov(*args: str) -> None:
    exe = Path(sys.executable).with_name("ruralcov")
    subprocess.run([str(exe), "-q", *args], check=True)


def _hashes(run: Path) -> dict[str, str]:
    files = [run / "villages.parquet", *sorted((run / "tables").glob("*.csv"))]
    return {p.relative_to(run).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


def _worlds(tmp: Path) -> dict[str, Path]:
    """Each world's configuration file, written afresh into ``tmp``."""
    from test_capability import write_world
    from worlds import write_north_world

    return {"north": write_north_world(tmp / "north"),
            "five_way": write_world(tmp / "five_way"),
            "measured_only": write_world(tmp / "measured", capability=False)}


def published(*, demo: bool = True) -> dict[str, dict[str, str]]:
    """World name -> (file -> sha256) for the demo and every hand-made world."""
    out: dict[str, dict[str, str]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="ruralcov-same-"))
    try:
        if demo:
            _ruralcov("demo", "--no-maps", "--out", str(tmp / "demo"))
            out["demo"] = _hashes(tmp / "demo")
        for name, config in _worlds(tmp / "in").items():
            _ruralcov("run", str(config), "--no-maps", "--out", str(tmp / name))
            out[name] = _hashes(tmp / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["record", "check"])
    parser.add_argument("path", type=Path, help="JSON file of hashes")
    args = parser.parse_args()
    now = published()
    if args.action == "record":
        args.path.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"recorded {sum(map(len, now.values()))} files of {len(now)} runs in {args.path}")
        return 0
    before = json.loads(args.path.read_text(encoding="utf-8"))
    differ = [f"{world}/{name}" for world in sorted(set(before) | set(now))
              for name in sorted(set(before.get(world, {})) | set(now.get(world, {})))
              if before.get(world, {}).get(name) != now.get(world, {}).get(name)]
    for item in differ:
        print(f"differs: {item}")
    print(f"{sum(map(len, now.values()))} files of {len(now)} runs; {len(differ)} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
