"""Serving hooks for the tiny provider-test model (SageMaker PyTorch serving contract)."""

import json
import os


def model_fn(model_dir):
    with open(os.path.join(model_dir, "model.json")) as handle:
        return json.load(handle)


def input_fn(body, content_type):
    return body


def predict_fn(data, model):
    return {"answer": model["answer"], "bytes": len(data)}


def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
