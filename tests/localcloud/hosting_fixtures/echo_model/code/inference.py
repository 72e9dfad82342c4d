"""Test model in pure Python: `model.json` at the archive root names the model; the body
`boom` makes input_fn raise, so the container answers 500; the body `slow` takes 2 s to answer
(a request surely in flight when its worker dies); the body `whoami` answers the worker's pid; LOAD_DELAY_S
slows model_fn down."""

import json
import os
import time


def model_fn(model_dir):
    time.sleep(float(os.environ.get("LOAD_DELAY_S", "0")))
    with open(os.path.join(model_dir, "model.json")) as handle:
        return json.load(handle)


def input_fn(request_body, content_type):
    raw = request_body.encode("utf-8") if isinstance(request_body, str) else request_body
    if raw == b"boom":
        raise ValueError("boom: this model refuses the input")
    if raw == b"slow":
        time.sleep(2.0)
    if raw == b"whoami":
        return {"pid": os.getpid()}
    return {
        "text": raw[:64].decode("utf-8", "replace"),
        "received_type": type(request_body).__name__,
        "content_type": content_type,
    }


def predict_fn(data, model):
    return dict(data, model=model["name"], greeting=os.environ.get("GREETING", ""))


def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
