"""A script-mode job that saves a checkpoint, then runs until it is stopped."""

import os
import time
from pathlib import Path

if __name__ == "__main__":
    Path(os.environ["SM_MODEL_DIR"], "checkpoint.txt").write_text("partial")
    print(f"scones-sleep pid={os.getpid()}", flush=True)
    time.sleep(300)
