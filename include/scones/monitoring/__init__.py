"""The monitoring report of the live endpoint (issue #6): data capture in, drift against the training baseline,
charts and a self-contained HTML page out. Plain functions without Airflow; the DAG wires them to S3.

Modules: capture (keys, windows, parsing), stats (aggregates, PSI, alerts), charts (PNGs), html (the page),
report (build_report, report_files, check_alerts), synthetic (test and benchmark traffic).
"""
