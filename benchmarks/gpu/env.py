"""Write the run's environment (date, device, driver, CUDA, PyTorch, ncu) as JSON."""

from __future__ import annotations

import json
import sys

from . import common

if __name__ == "__main__":
    import torch

    dry = "--dry-run" in sys.argv
    env = common.environment(torch, common.device_of(torch, dry))
    env["ncu"] = common.ncu_environment()
    path = [a for a in sys.argv[1:] if not a.startswith("--")][0]
    with open(path, "w") as f:
        json.dump(env, f, indent=1)
    print(env)
