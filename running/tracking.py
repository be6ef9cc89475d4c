"""MLflow tracking of runs: params, metrics and artifacts, imported only when used.

The tracking URI is MLflow's own choice (`MLFLOW_TRACKING_URI`, else a local store in
the working directory). Only `ModelPlan.public()` reaches MLflow: never an API key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def tracked_run(experiment: str, run_name: str, params: dict[str, Any], run_id: str | None = None,
                trace: bool = False) -> Iterator[Any]:
    """An MLflow run (continued when `run_id` is given); with `trace`, DSPy autologging."""
    import mlflow

    mlflow.set_experiment(experiment)
    if trace:
        mlflow.dspy.autolog()
    try:
        run = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name=run_name)
    except mlflow.exceptions.MlflowException:
        run = mlflow.start_run(run_name=run_name)  # the stored run is gone: start afresh
    with run:
        if not run_id:
            mlflow.log_params({k: _param(v) for k, v in params.items()})
        yield run
        if trace:
            mlflow.flush_trace_async_logging()


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text[:6000]


def log_results(metrics: dict[str, float], artifacts: list[Path]) -> None:
    import mlflow

    mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
    for path in artifacts:
        if path.is_file():
            mlflow.log_artifact(str(path))
