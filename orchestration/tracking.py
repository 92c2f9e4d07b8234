"""MLflow tracking for stages: one run per stage, nested under one pipeline run.

Runs are created with `MlflowClient` rather than the fluent API so that nothing depends on a
process-global "active run": DVC starts every stage in a fresh process, Dagster may run several
stages in one. Stages of the same pipeline execution share a parent run found by its
`pipeline_key` tag (the Dagster run id, or the git commit + params hash under DVC).

Each trained teacher and student also becomes a version of a registered model
(`depth-distill-teacher`, `depth-distill-student-<name>`): its checkpoint and config as plain
artifacts of its run (a depth-distill checkpoint rebuilds its model by itself, so no MLflow
model flavour is involved), the version linked to that run.

Where runs go and where people look at them is configuration: `MLFLOW_TRACKING_URI` (the
store), `MLFLOW_EXPERIMENT_NAME` (the experiment, `depth-distill` by default) and
`DEPTH_DISTILL_MLFLOW_UI` (the UI address used in links, e.g. Dagster's).

`DEPTH_DISTILL_TRACKING=off` runs every stage without MLflow (metrics still go to `metrics/`).
A tracking server is reached once, with a short timeout, before a stage clears any output, so
an unreachable one fails in seconds with one line instead of after minutes of retries.
A store whose disk is full fails with one line naming the store (`DiskFull`), not a page of SQL.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from depth_core.atomic_io import DiskFull, raise_if_disk_full, says_disk_full

DEFAULT_EXPERIMENT = "depth-distill"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
UI_ENV = "DEPTH_DISTILL_MLFLOW_UI"
DEFAULT_UI = "http://127.0.0.1:5000"  # where `make mlflow` serves the UI
REGISTERED_PREFIX = "depth-distill"
MODEL_ARTIFACTS = "model"  # the run's artifact folder a registered version points at
_FLUSH_EVERY = 200
TRACKING_ENV = "DEPTH_DISTILL_TRACKING"
CONNECT_TIMEOUT_S = 5.0
# MLflow's own defaults (120 s per request, 7 retries with backoff) hang a stage for minutes.
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "15", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"}


class TrackingUnavailable(ValueError):
    """The MLflow tracking server cannot be reached; the message says how to run without it."""


def tracking_enabled() -> bool:
    """False when `DEPTH_DISTILL_TRACKING` is off / 0 / false / no."""
    return os.environ.get(TRACKING_ENV, "on").strip().lower() not in ("off", "0", "false", "no")


def check_tracking(root: Path) -> None:
    """Reach a tracking server now, within CONNECT_TIMEOUT_S; local stores need no check."""
    if not tracking_enabled():
        return
    uri = default_tracking_uri(root)
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=CONNECT_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return  # it answered: reachable
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingUnavailable(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it, point "
            f"MLFLOW_TRACKING_URI elsewhere, or run without tracking: {TRACKING_ENV}=off"
        ) from None


def default_tracking_uri(root: Path) -> str:
    """`MLFLOW_TRACKING_URI` when set, else the embedded sqlite store in the repository root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / 'mlflow.db').resolve()}"


def experiment_name() -> str:
    """`MLFLOW_EXPERIMENT_NAME` when set (MLflow's own variable), else `depth-distill`."""
    return os.environ.get(EXPERIMENT_ENV, "").strip() or DEFAULT_EXPERIMENT


def ui_address() -> str:
    """The MLflow UI links point at: `DEPTH_DISTILL_MLFLOW_UI`; else the tracking server itself
    when `MLFLOW_TRACKING_URI` is one (a server serves its UI); else `make mlflow`'s address."""
    configured = os.environ.get(UI_ENV, "").strip()
    if configured:
        return configured.rstrip("/")
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return DEFAULT_UI


def run_page_url(run_id: str, experiment_id: str | None = None) -> str:
    """The UI page of one run (the UI finds the experiment itself when it is not given)."""
    base = ui_address()
    if experiment_id:
        return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{base}/#/runs/{run_id}"


def registered_model_name(role: str, student: str | None = None) -> str | None:
    """The registered model a trained model becomes a version of: `depth-distill-teacher`,
    `depth-distill-student-<name>`; None for runs that make no lineage model (controls)."""
    if role == "teacher":
        return f"{REGISTERED_PREFIX}-teacher"
    if role == "student" and student:
        return f"{REGISTERED_PREFIX}-student-{student}"
    return None


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def teacher_tags(source: str, path: str | None = None) -> dict[str, str]:
    """Tags saying which teacher a run belongs to: `teacher_source` (train | checkpoint |
    transformers) and, for a teacher not trained here, `teacher_path` as params.yaml gives it.
    Every run the teacher shapes carries them (teacher, students, report), so MLflow can filter
    the runs distilled from one teacher."""
    tags = {"teacher_source": source}
    if source != "train" and path:
        tags["teacher_path"] = str(path)
    return tags


def config_params(config: BaseModel, prefix: str = "") -> dict:
    """One MLflow param per config field under dotted keys (`optim.lr`, `model.backbone`):
    nested configs are walked, any other value (a list, `backbone_kwargs`) is one JSON value,
    so every run of one config type logs the same keys whatever its values."""
    dumped = config.model_dump(mode="json")
    flat = {}
    for name in type(config).model_fields:
        key = f"{prefix}.{name}" if prefix else name
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            flat.update(config_params(value, key))
        elif isinstance(dumped[name], (dict, list)):
            flat[key] = json.dumps(dumped[name], sort_keys=True)
        else:
            flat[key] = dumped[name]
    return flat


def _client(root: Path):
    """A client bound to this root's store. Not `mlflow.set_tracking_uri`: that also exports
    MLFLOW_TRACKING_URI, and every later stage in the process, whatever its root, would log
    into the first root's store."""
    from mlflow.tracking import MlflowClient

    for name, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    uri = default_tracking_uri(root)
    return _StoreClient(MlflowClient(tracking_uri=uri), f"MLflow store {uri}")


class _StoreClient:
    """An MlflowClient whose calls fail as DiskFull naming the store (or, for artifacts, the
    run's artifact folder) when its disk is full: MLflow reports that as a multi-line SQL error
    or a bare OSError, neither naming a path."""

    def __init__(self, client, store: str):
        self._client, self._store = client, store

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except Exception as error:
                raise_if_disk_full(error, self._target(name, args))
                raise

        return call

    def _target(self, method: str, args: tuple) -> str:
        if method.startswith("log_artifact") and args:
            with suppress(Exception):  # the store may fail to answer too
                return f"MLflow artifacts {self._client.get_run(args[0]).info.artifact_uri}"
        return self._store


# MLflow logs every failed SQL statement with its parameters before raising; a full disk is
# reported once, as DiskFull naming the store.
logging.getLogger("mlflow.store.db.utils").addFilter(
    lambda record: not says_disk_full(record.getMessage())
)


def _experiment_id(client, root: Path) -> str:
    name = experiment_name()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    # Artifacts next to the store, never in the current working directory of a stage.
    return client.create_experiment(name, artifact_location=(root / "mlruns").resolve().as_uri())


@dataclass
class StageRun:
    """Handle given to a running stage: metric logging with batching, artifacts, tags."""

    client: object
    run_id: str
    _pending: list = field(default_factory=list)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for key, value in metrics.items():
            value = float(value)
            if not math.isfinite(value):
                continue
            self._pending.append(Metric(_safe_key(key), value, now, int(step or 0)))
        if len(self._pending) >= _FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:900], self._pending[900:]
            self.client.log_batch(self.run_id, metrics=batch)

    def log_params(self, params: dict[str, object]) -> None:
        from mlflow.entities import Param

        items = [Param(_safe_key(k), str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 90):
            self.client.log_batch(self.run_id, params=items[start : start + 90])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.exists():
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def artifact_uri(self, artifact_path: str) -> str:
        """Where a logged artifact lives in the artifact store (a URI MLflow downloads from)."""
        return f"{self.client.get_run(self.run_id).info.artifact_uri}/{artifact_path}"

    def register_model(
        self, name: str, files: list[Path], config: dict, tags: dict[str, str] | None = None
    ) -> str:
        """Log `files` and `config.json` under the run's `model/` folder and make that folder a
        new version of registered model `name` (created when missing), linked to this run.
        Returns the version number."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

        with tempfile.TemporaryDirectory() as tmp:
            config_file = Path(tmp) / "config.json"
            config_file.write_text(json.dumps(config, indent=1, sort_keys=True))
            for path in [*files, config_file]:
                self.client.log_artifact(self.run_id, str(path), MODEL_ARTIFACTS)
        try:
            self.client.create_registered_model(name)
        except MlflowException as error:
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
        version = self.client.create_model_version(
            name,
            self.artifact_uri(MODEL_ARTIFACTS),
            run_id=self.run_id,
            tags={_safe_key(k): str(v) for k, v in (tags or {}).items()},
            run_link=run_page_url(self.run_id),
            await_creation_for=0,
        )
        return str(version.version)


class UntrackedRun:
    """What a stage logs to when tracking is off: nothing is recorded, nothing fails."""

    run_id = None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def flush(self) -> None:
        pass

    def log_params(self, params: dict[str, object]) -> None:
        pass

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        pass

    def register_model(
        self, name: str, files: list[Path], config: dict, tags: dict[str, str] | None = None
    ) -> None:
        return None


def _safe_key(key: str) -> str:
    """MLflow keys allow alphanumerics, `_ - . / space`; anything else becomes `_`."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def _find_or_create_parent(client, experiment_id: str, pipeline_key: str, tags: dict) -> str:
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.pipeline_key = '{pipeline_key}' and tags.role = 'pipeline'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    if found:
        return found[0].info.run_id
    run = client.create_run(
        experiment_id,
        run_name=f"pipeline {tags.get('runner', '')} {pipeline_key[:12]}".strip(),
        tags={**tags, "pipeline_key": pipeline_key, "role": "pipeline"},
    )
    return run.info.run_id


def _setup_lock_file(root: Path) -> Path:
    """Beside a sqlite store (shared by every root that points at it), else in the root."""
    uri = default_tracking_uri(root)
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///").split("?")[0] + ".setup.lock")
    return Path(root) / ".locks" / "mlflow-setup.lock"


@contextmanager
def _store_setup_lock(root: Path, timeout_s: float = 300.0) -> Iterator[None]:
    """One process at a time creates the store's tables, the experiment and a pipeline's parent
    run: stages that start together (Dagster's multiprocess executor, two schedulers) otherwise
    race MLflow's schema migration on a new sqlite file ("table metrics already exists") and
    make two parent runs for one pipeline. Held for milliseconds once the store exists."""
    path = _setup_lock_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with open(path, "a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"MLflow store setup: {path} stayed locked for {timeout_s:.0f} s"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def stage_run(
    root: Path,
    stage: str,
    role: str,
    pipeline_key: str,
    runner: str,
    params: dict[str, object] | None = None,
    extra_tags: dict[str, str] | None = None,
    run_name: str | None = None,
) -> Iterator[StageRun]:
    """Open an MLflow run for one stage under the pipeline's parent run; close it on exit.
    With tracking off, an UntrackedRun."""
    if not tracking_enabled():
        yield UntrackedRun()
        return
    check_tracking(root)
    tags = {"runner": runner, **(extra_tags or {})}
    commit = git_commit(root)
    if commit:
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    dvc_exp = os.environ.get("DVC_EXP_NAME")
    if dvc_exp:
        tags["dvc_experiment"] = dvc_exp
    with _store_setup_lock(root):
        client = _client(root)
        experiment_id = _experiment_id(client, root)
        parent = _find_or_create_parent(client, experiment_id, pipeline_key, dict(tags))
    run = client.create_run(
        experiment_id,
        run_name=run_name or stage,
        tags={
            **tags,
            "stage": stage,
            "role": role,
            "pipeline_key": pipeline_key,
            "mlflow.parentRunId": parent,
        },
    )
    handle = StageRun(client, run.info.run_id)
    if params:
        handle.log_params(params)
    status = "FAILED"
    try:
        yield handle
        status = "FINISHED"
    finally:
        try:
            try:
                handle.flush()
            finally:
                client.set_terminated(run.info.run_id, status)
        except DiskFull:
            if status == "FINISHED":
                raise
            # the stage failed already (often on the same full disk): keep its own error


@dataclass
class Attached:
    """What `attach_to_run` recorded: the run, each artifact's URI, the versions it tagged."""

    run_id: str
    artifact_uris: dict[str, str]
    model_versions: list[str]  # "name/version"


def attach_to_run(
    root: Path,
    run_id: str | None,
    artifacts: dict[str, Path],
    metrics: dict[str, float],
    tags: dict[str, str],
) -> Attached | None:
    """Add artifacts (artifact folder -> file), metrics and tags to an existing run, such as a
    finished student's, and tag every registered model version made from that run with the
    same tags plus `<folder>_uri` pointing at each artifact: what is made from a trained model
    (its ONNX export) is found with the run that trained it and with its registered version.
    None, and nothing logged, when tracking is off or the run is gone."""
    if not tracking_enabled() or not run_id:
        return None
    from mlflow.exceptions import MlflowException

    check_tracking(root)
    client = _client(root)
    try:
        client.get_run(run_id)
    except MlflowException:
        return None
    handle = StageRun(client, run_id)
    handle.log_metrics(metrics)
    handle.flush()
    uris = {}
    for folder, path in artifacts.items():
        handle.log_artifact(path, folder)
        uris[folder] = handle.artifact_uri(f"{folder}/{Path(path).name}")
    for key, value in tags.items():
        client.set_tag(run_id, _safe_key(key), str(value))
    version_tags = {**tags, **{f"{folder}_uri": uri for folder, uri in uris.items()}}
    versions = []
    for version in client.search_model_versions(f"run_id = '{run_id}'"):
        for key, value in version_tags.items():
            client.set_model_version_tag(version.name, version.version, _safe_key(key), str(value))
        versions.append(f"{version.name}/{version.version}")
    return Attached(run_id, uris, versions)
