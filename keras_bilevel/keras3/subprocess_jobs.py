"""A job run in a Python subprocess of another stack, through files in a temporary folder.

An export whose converter lives on another stack (TensorFlow's LiteRT converter for a
JAX or PyTorch model, the Larq stack for Larq Compute Engine) pickles its job into a
folder, runs `python ARGUMENTS FOLDER`, and reads back what the process pickled.

!!! example
    ```python
    outcome = run_job(["-m", "some.module"], python_env(KERAS_BACKEND="tensorflow"),
                      {"path": "m.tflite"}, "the converter process")
    ```
"""

import os
import pickle
import subprocess
import sys
import tempfile

__all__ = ["ARGS_FILE", "PLAIN_FILE", "RESULT_FILE", "python_env", "run_job"]

# Files the TensorFlow subprocess reads and writes in its work folder.
PLAIN_FILE, ARGS_FILE, RESULT_FILE = "plain.keras", "args.pkl", "result.pkl"



def python_env(drop=(), **values):
    """This process's environment for a Python subprocess that imports keras_bilevel:
    `drop` removed, `values` set, TensorFlow's C++ log quiet unless set, the package's
    folder on `PYTHONPATH`."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(values)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (package_root, env.get("PYTHONPATH")) if part
    )
    return env


def run_job(arguments, env, job, what, prepare=None):
    """Runs `python ARGUMENTS FOLDER`, where FOLDER holds `job` (pickled, `ARGS_FILE`)
    and whatever `prepare(folder)` writes; returns what the process pickled into
    `RESULT_FILE`. RuntimeError with the end of its error output (`what` names the
    process) if it wrote nothing or failed."""
    with tempfile.TemporaryDirectory() as folder:
        if prepare is not None:
            prepare(folder)
        with open(os.path.join(folder, ARGS_FILE), "wb") as file:
            pickle.dump(job, file)
        done = subprocess.run([sys.executable, *arguments, folder], env=env,
                              capture_output=True, text=True)
        result = os.path.join(folder, RESULT_FILE)
        if done.returncode != 0 or not os.path.exists(result):
            raise RuntimeError(
                f"{what} failed (exit status {done.returncode}). Its error output ends "
                f"with:\n{done.stderr[-4000:]}"
            )
        with open(result, "rb") as file:
            return pickle.load(file)
