"""Test isolation: no network lookups, DSPy cache and MLflow store in a temp folder."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
