"""Defines transform_fn and input_fn together, which the serving toolkit refuses at start."""


def model_fn(model_dir):
    return object()


def input_fn(request_body, content_type):
    return request_body


def transform_fn(model, request_body, content_type, accept):
    return request_body, content_type
