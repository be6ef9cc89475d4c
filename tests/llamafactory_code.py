"""LLaMA-Factory's own sharegpt converter and function-call formatter, loaded from its wheel.

`pip install llamafactory` pulls a training stack (peft, torchaudio, ...) that does not
install on this machine, and importing `llamafactory.data` imports all of it. The two
pieces that read a sharegpt dataset are plain Python: `data/converter.py`
(SharegptDatasetConverter: roles, alternation, what is skipped as broken) and
`data/formatter.py` + `data/tool_utils.py` (how a function_call turn's JSON is parsed). They
are loaded from the downloaded wheel unchanged, under stand-ins for the three modules they
import only for logging and configuration constants.
"""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
import types
import zipfile
from pathlib import Path

VERSION = "0.9.5"


def _package(name: str, path: Path) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__path__ = [str(path)]
    sys.modules[name] = module
    return module


def load(root: Path) -> types.SimpleNamespace:
    """Download the wheel into `root` (pip, no dependencies) and import its converter and formatter."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", f"llamafactory=={VERSION}",
                    "-d", str(root)], check=True, capture_output=True)
    [wheel] = root.glob("llamafactory-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(root / "src")
    src = root / "src" / "llamafactory"
    for name in [n for n in sys.modules if n == "llamafactory" or n.startswith("llamafactory.")]:
        del sys.modules[name]
    _package("llamafactory", src)
    _package("llamafactory.extras", src / "extras")
    _package("llamafactory.data", src / "data")
    log = types.ModuleType("llamafactory.extras.logging")

    def get_logger(name=None):
        logger = logging.getLogger(name or "llamafactory")
        logger.warning_rank0 = logger.warning
        logger.info_rank0 = logger.info
        return logger
    log.get_logger = get_logger
    sys.modules["llamafactory.extras.logging"] = log
    constants = types.ModuleType("llamafactory.extras.constants")
    constants.DATA_CONFIG = "dataset_info.json"
    sys.modules["llamafactory.extras.constants"] = constants
    misc = types.ModuleType("llamafactory.extras.misc")
    misc.use_modelscope = misc.use_openmind = lambda: False
    sys.modules["llamafactory.extras.misc"] = misc
    return types.SimpleNamespace(
        converter=importlib.import_module("llamafactory.data.converter"),
        parser=importlib.import_module("llamafactory.data.parser"),
        formatter=importlib.import_module("llamafactory.data.formatter"),
    )
