"""Wall time of one Fiji call of *Segment Current Image*, defaults cached at install time or not.

    .venv/bin/python benchmarks/bench_fiji_call.py [--repeat 3] [--model nuclei] [--before-scripts DIR]

The scripts are installed into a temporary ``Fiji.app`` by ``install_scripts`` twice: once
with the cache of ``cellseg defaults`` (the default since issue 18), once without it (as
before: the script starts Python for ``cellseg defaults``, then for ``cellseg segment``).
Each call runs under ImageJ 1.x + Jython through ``tests/fiji/fiji_session.py``, which
reports the call's own wall time (parameters in to result out; JVM start excluded, as in a
running Fiji). Image: ``sample_data/nuclei_00.ome.tif``, bundled model. Prints one JSON line.

``--before-scripts DIR`` installs another ``fiji_scripts`` folder for the uncached side, e.g. the
scripts before issue 18: ``git archive 4d67e7b fiji_scripts | tar -x -C /tmp/before``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SESSION = REPO / "tests" / "fiji" / "fiji_session.py"
JYTHON_JAR = Path("/usr/share/java/jython.jar")


def call_seconds(fiji: Path, image: Path, model: str, out: Path) -> float:
    """One call of the installed Segment_Current_Image.py; its wall time as the script saw it."""
    from cellseg_bridge.fiji.jvm import find_ij_jar, find_java

    home = tempfile.mkdtemp(prefix="ij_home_")
    command = [find_java(), "-Djava.awt.headless=true", f"-Duser.home={home}", "-cp",
               f"{find_ij_jar()}:{JYTHON_JAR}", "org.python.util.jython", str(SESSION),
               str(fiji / "scripts" / "Plugins" / "Cellseg" / "Segment_Current_Image.py"), f"imp={image}",
               f"model={model}", f"output_dir={out}"]
    env = {k: v for k, v in os.environ.items() if k != "CELLSEG_COMMAND"}
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    lines = [line for line in run.stdout.splitlines() if line.startswith("CELLSEG_RESULT ")]
    if not lines:
        raise RuntimeError(run.stdout[-2000:] + run.stderr[-2000:])
    result = json.loads(lines[-1][len("CELLSEG_RESULT "):])
    if not result.get("ok"):
        raise RuntimeError(result.get("error"))
    return float(result["session_seconds"])


def main() -> None:
    from cellseg_bridge.fiji.install import install_scripts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--before-scripts", type=Path, default=None, help="fiji_scripts folder of the uncached side")
    args = parser.parse_args()
    image = REPO / "sample_data" / "nuclei_00.ome.tif"
    times: dict[str, list[float]] = {"no_cache": [], "cached": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cache in (("no_cache", False), ("cached", True)):
            fiji = Path(tmp) / name / "Fiji.app"
            (fiji / "jars").mkdir(parents=True)
            install_scripts(fiji, scripts_dir=None if cache else args.before_scripts,
                            commands=["segment", "train", "restore", "hitl"], cache_defaults=cache)
        for k in range(args.repeat):  # interleaved, so that load on the machine hits both alike
            for name in times:
                fiji = Path(tmp) / name / "Fiji.app"
                times[name].append(call_seconds(fiji, image, args.model, Path(tmp) / f"out_{name}_{k}"))
    before, after = statistics.median(times["no_cache"]), statistics.median(times["cached"])
    print(json.dumps({"image": image.name, "before_scripts": str(args.before_scripts or "this checkout"), "model": args.model, "python": sys.version.split()[0],
                      "seconds_no_cache": times["no_cache"], "seconds_cached": times["cached"],
                      "median_no_cache": round(before, 2), "median_cached": round(after, 2),
                      "ratio": round(before / after, 2)}))


if __name__ == "__main__":
    main()
