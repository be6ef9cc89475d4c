"""Test isolation: no network lookups; DSPy's disk cache and MLflow's store in a temp folder."""

import os
import tempfile

_scratch = tempfile.mkdtemp(prefix="gem-synth-tests-")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DSPY_CACHEDIR", os.path.join(_scratch, "dspy-cache"))
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{os.path.join(_scratch, 'mlflow.db')}")
os.environ.setdefault("HF_DATASETS_CACHE", os.path.join(_scratch, "hf-datasets"))


import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

LLAMA_CPP_SDIST = "llama-cpp-python==0.3.36"


@pytest.fixture(scope="session")
def sdist(tmp_path_factory):
    """Every chat template llama.cpp ships (`models/templates/*.jinja`) and the Qwen2 vocabulary,
    from the llama-cpp-python sdist (pip's cache holds it once setup has built llama.cpp)."""
    root = tmp_path_factory.mktemp("sdist")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                    LLAMA_CPP_SDIST, "-d", str(root)], check=True, capture_output=True)
    [archive] = root.glob("llama_cpp_python-*.tar.gz")
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            inner = member.name.split("/", 1)[-1]
            if (inner.startswith("vendor/llama.cpp/models/templates/") and inner.endswith(".jinja")) or \
                    inner == "vendor/llama.cpp/models/ggml-vocab-qwen2.gguf":
                member.name = Path(member.name).name
                tar.extract(member, root)
    return root
