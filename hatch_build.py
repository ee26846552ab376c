"""Hatchling build hook: compiles the optional C scanner ``server/ovserve/server/codecs/_numjson.c``.

The extension makes large JSON bodies fast (see ``codecs/numjson.py``); the server works
without it. It is built with ``$CC`` if set, else the C compiler Python itself was built with
(``sysconfig``'s ``CC``), and Python's headers; no other build dependency. Without a compiler the build goes on
as a pure-Python wheel and says so. ``OVSERVE_NO_NATIVE=1`` skips it on purpose.

An editable install (``make venv``) leaves the built module next to its source, which is where
the editable install imports from; a regular wheel carries it inside.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("server/ovserve/server/codecs/_numjson.c")


def compile_extension(source: Path) -> Path:
    """Build ``source`` into an extension module beside it; the path of the module."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    target = source.with_name(source.stem + suffix)
    partial = target.with_name(target.name + ".partial")
    compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    command = [
        *compiler, "-O2", "-fPIC", "-shared", "-Wall", "-Wextra",
        f"-I{sysconfig.get_paths()['include']}", str(source), "-o", str(partial),
    ]
    subprocess.run(command, check=True, capture_output=True, text=True)
    os.replace(partial, target)  # never a half-written module where Python imports from
    return target


class NativeBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or os.environ.get("OVSERVE_NO_NATIVE"):
            return
        try:
            target = compile_extension(Path(self.root) / SOURCE)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            self.app.display_warning(
                f"ovserve: the C JSON scanner was not built ({detail.strip()}); "
                "large JSON bodies take the pure-Python path"
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][str(target)] = f"ovserve/server/codecs/{target.name}"
