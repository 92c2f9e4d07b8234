"""Subprocess entry point for the resume and DDP tests: `python run_training.py SPEC.json`.

SPEC holds the TrainConfig, the data paths, `sleep` (seconds the log callback waits per step,
so a test can kill the run mid-way) and `report` (a JSON file each rank writes its parameter
checksum, its metrics and the sample ids of every step it trained to).
"""

import json
import os
import sys
import time
from pathlib import Path

import torch

from depth_core.distributed import parameter_checksum
from depth_core.training import TrainConfig, train
from depth_core.training import trainer as trainer_module


def record_step_ids() -> list[list[str]]:
    """The ids of each batch this rank trains on, in step order."""
    steps: list[list[str]] = []
    real_step = trainer_module.train_step

    def recording_step(network, optimizer, batch, *args, **kwargs):
        steps.append([str(i) for i in batch["id"]])
        return real_step(network, optimizer, batch, *args, **kwargs)

    trainer_module.train_step = recording_step
    return steps


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(1)
    steps = record_step_ids()

    def log(metrics, step):
        if spec.get("sleep"):
            time.sleep(spec["sleep"])

    result = train(
        TrainConfig.model_validate(spec["config"]),
        out_dir=Path(spec["out_dir"]),
        labeled_dirs=[Path(spec["labeled"])],
        val_sets={"val": Path(spec["val"])},
        pseudo=[tuple(spec["pseudo"])] if spec.get("pseudo") else None,
        log=log,
    )
    if spec.get("report"):
        rank = int(os.environ.get("RANK", "0"))
        report = Path(spec["report"]).with_suffix(f".rank{rank}.json")
        report.write_text(
            json.dumps(
                {
                    "checksum": parameter_checksum(result.model).tolist(),
                    "metrics": result.metrics,
                    "step_ids": steps,
                }
            )
        )


if __name__ == "__main__":
    main(sys.argv[1])
