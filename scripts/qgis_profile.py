"""Create a QGIS profile that runs the bfe plugin from this working tree (for make qgis / e2e).

Writes ``PROFILES/profiles/bfe/``: ``QGIS/QGIS3.ini`` enabling the plugin and quieting
start-up dialogs, and ``python/plugins/bfe_plugin/`` as symlinks to the working tree (plus
``metadata.txt`` from the repository root), so edits apply on the next QGIS start. The plugin
finds ml_core in the checkout. Idempotent.

Usage: python scripts/qgis_profile.py PROFILES
"""

from __future__ import annotations

import argparse
import configparser
import shutil
from pathlib import Path

from package_plugin import PLUGIN, plugin_entries

PROFILE = "bfe"
SETTINGS = {
    "PythonPlugins": {PLUGIN: "true"},
    "qgis": {"checkVersion": "false", "showTips": "false", "allowVersionCheck": "false"},
    "core": {"NewsFeed\\httpsfeedqgisorg\\disabled": "true"},
}


def make_profile(profiles: Path) -> Path:
    """Create (or refresh) the profile and return its folder."""
    profile = profiles.resolve() / "profiles" / PROFILE
    ini = profile / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    config = configparser.ConfigParser(interpolation=None)
    config.optionxform = str  # Qt keys are case-sensitive
    config.read(ini)
    for section, values in SETTINGS.items():
        if not config.has_section(section):
            config.add_section(section)
        config[section].update(values)
    with ini.open("w") as handle:
        config.write(handle, space_around_delimiters=False)
    plugin = profile / "python" / "plugins" / PLUGIN
    shutil.rmtree(plugin, ignore_errors=True)
    for src, rel in plugin_entries(vendor=False):
        link = plugin / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(src)
    return profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", type=Path, help="folder given to qgis --profiles-path")
    print(make_profile(parser.parse_args().profiles))


if __name__ == "__main__":
    main()
