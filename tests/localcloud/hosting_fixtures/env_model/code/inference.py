"""Test model in pure Python that answers every request with its own process environment as JSON: what model
code can read, for the tests that check nothing of the local SageMaker's environment reaches it."""

import json
import os


def model_fn(model_dir):
    return None


def transform_fn(model, request_body, content_type, accept):
    return json.dumps(dict(os.environ)), "application/json"
