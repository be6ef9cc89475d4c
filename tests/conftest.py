"""Test isolation: no network lookups; DSPy's disk cache and MLflow's store in a temp folder."""

import os
import tempfile

_scratch = tempfile.mkdtemp(prefix="gem-synth-tests-")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DSPY_CACHEDIR", os.path.join(_scratch, "dspy-cache"))
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{os.path.join(_scratch, 'mlflow.db')}")
os.environ.setdefault("HF_DATASETS_CACHE", os.path.join(_scratch, "hf-datasets"))
# The `ray_cluster` fixture's `ray start` turns on token authentication, and Ray reads the mode of
# its clients once, when first imported (test collection imports it): they must say so from the
# start. A token of the session's own, so that nothing depends on ~/.ray of the machine.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", __import__("secrets").token_hex(32))


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


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray cluster of 2 CPUs (`ray start --head`), its address for `--ray-address`.
    Started once for the session; `ray stop` at the end. Skipped when Ray is not installed."""
    import shutil
    import socket

    pytest.importorskip("ray")
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent))
    with socket.socket() as sock:  # a free port for the cluster's GCS
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([ray_cli, "start", "--head", "--num-cpus", "2", "--port", str(port), "--include-dashboard",
                    "false", "--disable-usage-stats"],
                   check=True, capture_output=True, env=env)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, env=env)


@pytest.fixture(params=["local", "ray"])
def engine(request):
    """The engine's CLI arguments, for a test that must hold for both: threads in this process,
    or the Ray engine on the 2-CPU local cluster of `ray_cluster`."""
    if request.param == "local":
        return []
    return ["--engine", "ray", "--ray-address", request.getfixturevalue("ray_cluster")]
