"""Test isolation: no network lookups; DSPy's disk cache and MLflow's store in a temp folder."""

import os
import tempfile

_scratch = tempfile.mkdtemp(prefix="gem-synth-tests-")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DSPY_CACHEDIR", os.path.join(_scratch, "dspy-cache"))
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{os.path.join(_scratch, 'mlflow.db')}")
os.environ.setdefault("HF_DATASETS_CACHE", os.path.join(_scratch, "hf-datasets"))
