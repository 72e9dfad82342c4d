"""`make bench`: measurements of the model, the endpoint, the workflow, the monitoring report, DAG parsing and
the demo, against the local cloud. `bench.py` is the entry point; each part lives in its own module."""
