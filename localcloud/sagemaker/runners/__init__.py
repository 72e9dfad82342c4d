"""Processes behind the local SageMaker: training jobs, model servers, batch transform, capture.
Runners know nothing about HTTP requests to the control plane or the SQLite store."""
