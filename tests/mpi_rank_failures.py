"""A per-rank script that fails on purpose (argv[1]: raise, kill or hang) on rank 1, mid-step."""

import os
import signal
import sys
import time

import numpy as np

import minigrad.distributed as dist

dist.init_process_group()
x = np.ones(8)
for step in range(3):
    if step == 1 and dist.get_rank() == 1:
        if sys.argv[1] == "raise":
            raise ValueError("rank one gives up")
        if sys.argv[1] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if sys.argv[1] == "hang":
            time.sleep(600)
    dist.all_reduce(x)
