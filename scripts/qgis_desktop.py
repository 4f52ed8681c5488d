"""Start the real QGIS desktop with bfe enabled from the working tree, in its own profile.

``open``: the sample project, interactively (``make qgis``).
``e2e``: the same under Xvfb, driven by ``scripts/e2e_qgis.py``, which saves a screenshot and a
JSON result; the exit status says whether it passed (``make e2e``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess  # nosec B404: fixed argument lists, no shell
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "desktop"
PROFILE = "bfe"


def make_profile() -> Path:
    """A fresh profile whose plugin folder links to the working tree, with bfe enabled."""
    profiles = BUILD / "profiles"
    home = profiles / "profiles" / PROFILE
    if home.exists():
        shutil.rmtree(home)
    plugin_dir = home / "python" / "plugins" / "bfe_plugin"
    plugin_dir.mkdir(parents=True)
    for entry in (ROOT / "bfe_plugin").iterdir():
        if entry.name != "__pycache__":
            (plugin_dir / entry.name).symlink_to(entry)
    (plugin_dir / "metadata.txt").symlink_to(ROOT / "metadata.txt")
    ini = home / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(
        "[PythonPlugins]\nbfe_plugin=true\n\n"
        "[qgis]\ncheckVersion=false\nshowTips=false\n\n"
        "[UI]\nhideSplash=true\n"
    )
    return profiles


def qgis_env() -> dict:
    """Let QGIS's Python find torch (the venv) and ml_core (the working tree)."""
    env = dict(os.environ)
    site = sysconfig.get_paths()["purelib"]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), site, env.get("PYTHONPATH")) if p)
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("open", "e2e"))
    parser.add_argument("--screenshot", type=Path, default=ROOT / "docs" / "screenshot.png")
    parser.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args()

    project = BUILD / "sample.qgz"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "qgis_project.py"), str(project)],
                   check=True, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    profiles = make_profile()
    qgis = ["qgis", "--nologo", "--noversioncheck", "--profiles-path", str(profiles),
            "--profile", PROFILE]
    env = qgis_env()
    if args.mode == "open":
        return subprocess.call([*qgis, "--project", str(project)], env=env)

    result = BUILD / "e2e_result.json"
    result.unlink(missing_ok=True)
    env.update(BFE_E2E_SCREENSHOT=str(args.screenshot.resolve()), BFE_E2E_RESULT=str(result))
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", *qgis,
           "--code", str(ROOT / "scripts" / "e2e_qgis.py"), "--project", str(project)]
    try:
        subprocess.run(cmd, env=env, timeout=args.timeout, check=False)
    except subprocess.TimeoutExpired:
        print(f"e2e: QGIS did not finish within {args.timeout} s", file=sys.stderr)
        return 1
    if not result.exists():
        print("e2e: QGIS exited without writing a result; see the log above.", file=sys.stderr)
        return 1
    outcome = json.loads(result.read_text())
    print(json.dumps(outcome, indent=2))
    return 0 if outcome.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
