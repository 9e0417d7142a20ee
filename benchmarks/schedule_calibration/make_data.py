"""Generate and prepare one data variant of data.yaml (the synth profile's data with the
variant's overrides) with the study's own `lossbench fetch` and `lossbench prepare`.

    python benchmarks/schedule_calibration/make_data.py big_objects work_dirs/schedule_calibration/data
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from lossbench.profiles import load_params

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def main(name: str, out: str) -> int:
    variants = yaml.safe_load((HERE / "data.yaml").read_text(encoding="utf-8")) or {}
    if name not in variants:
        sys.exit(f"{HERE / 'data.yaml'}: no data variant {name!r}; expected one of {sorted(variants)}")
    profile = load_params(ROOT / "params.yaml")["profiles"]["synth"]
    unknown = set(variants[name]) - set(profile["data"])
    if unknown:
        sys.exit(f"{HERE / 'data.yaml'}: {name}: keys {sorted(unknown)} are not synth data options "
                 f"(expected some of {sorted(profile['data'])})")
    profile["data"].update(variants[name])
    # paths in a params file are relative to it, and this one is written elsewhere: make them absolute
    profile["config"] = str(ROOT / profile["config"])
    profile["data"]["anchor_config"] = str(ROOT / profile["data"]["anchor_config"])
    dest = Path(out) / name
    if (dest / "prepared" / "test.json").is_file():
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        pfile = Path(tmp) / "params.yaml"
        pfile.write_text(yaml.safe_dump({"profiles": {name: profile}}), encoding="utf-8")
        for cmd in (["fetch", "--root", dest / "raw"],
                    ["prepare", "--root", dest / "raw", "--out", dest / "prepared"]):
            argv = [sys.executable, "-m", "lossbench", cmd[0], "--profile", name, "--params", str(pfile),
                    *map(str, cmd[1:])]
            if subprocess.run(argv, stdout=subprocess.DEVNULL).returncode:  # its error is on stderr
                sys.exit(f"data variant {name}: `lossbench {cmd[0]}` failed")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
