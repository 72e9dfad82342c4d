"""The batch part: every image under an S3 prefix classified by the batch state machine (a Distributed Map over
the real three Lambdas, plus collect_batch_results), against a SageMaker batch transform of the same images with
the same model, at 100 and at 1,000 images.

The images are the bench's test images, copied under `bench/batch/<n>/` until there are n of them. Both are
deployed with the workflow DAG's own functions (bench names, the bench endpoint). Each measurement is the
client's wall time from the start call until the work is done (the execution SUCCEEDED and its results file
written; the transform job Completed with every output), so a transform's model-server start counts, as a map's
Lambda and endpoint calls do. Each round runs map, transform at 100 images, then at 1,000, on a warm endpoint
and warm Lambdas (one warm-up map of a few images first); REPEATS rounds, the median run of each reported.

From the two sizes, each kind's time is split as t = fixed + n × per image (a straight line through the two
medians): the fixed part is what does not grow with the images (the Standard execution's start, the results
collection; the transform's model-server start), the per-image part what does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from benchmarks import endpoint_bench, model_bench, workflow_bench
from benchmarks.context import BUCKET, BenchContext, load_average, log, utc_now
from include.scones import lambda_deploy, sagemaker_requests, state_machine_deploy
from include.scones.manifests import read_lst
from include.scones.records import BatchRequest, BatchSummary

SIZES = (100, 1000)
REPEATS = 3  # of each size and kind; the median run is reported
WARMUP_IMAGES = 8
BATCH_MACHINE = "scones-bench-batch-classification"
PREFIX = "bench/batch"
POLL_S = 0.2
TIMEOUT_S = 900.0


def deploy(ctx: BenchContext) -> str:
    """The four functions under bench names and the batch machine, created or updated as the DAG does."""
    client = ctx.client("lambda")
    environment = {"ENDPOINT_NAME": endpoint_bench.ENDPOINT_NAME, "THRESHOLD": repr(model_bench.THRESHOLD)}
    environment |= lambda_deploy.endpoint_environment(workflow_bench.connection_extra(ctx))
    functions = {
        spec.placeholder: lambda_deploy.ensure_function(
            client, spec, workflow_bench.LAMBDA_ROLE_ARN, environment,
            lambda_deploy.lambda_zip(lambda_deploy.LAMBDAS_DIR / spec.folder),
        )
        for spec in workflow_bench.bench_functions("scones-bench")
    }  # fmt: skip
    definition = state_machine_deploy.render_batch_definition(functions)
    sfn = ctx.client("stepfunctions")
    return state_machine_deploy.ensure_state_machine(sfn, BATCH_MACHINE, definition, workflow_bench.STATES_ROLE_ARN)[
        "arn"
    ]


def upload_images(ctx: BenchContext, count: int) -> str:
    """`count` test images under bench/batch/<count>/images/ (the test split repeated, each copy its own key)."""
    channel_dir, _ = model_bench.channels(ctx)
    rows = read_lst(channel_dir / "test" / "test.lst")
    prefix = f"{PREFIX}/{count}/images/"
    ctx.ensure_bucket()
    existing = {o["Key"] for page in ctx.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
                for o in page.get("Contents", [])}  # fmt: skip
    for index in range(count):
        row = rows[index % len(rows)]
        key = f"{prefix}{index:05d}-{row.filename}"
        if key not in existing:
            ctx.s3.put_object(
                Bucket=BUCKET, Key=key, Body=(channel_dir / "test" / "images" / row.filename).read_bytes()
            )
    return prefix


def finished(describe: Callable[[], dict[str, Any]], field: str, busy: str, what: str) -> dict[str, Any]:
    """Poll `describe` every POLL_S until its `field` is no longer `busy`; TimeoutError after TIMEOUT_S."""
    deadline = time.monotonic() + TIMEOUT_S
    while (description := describe())[field] == busy:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} still {busy} after {TIMEOUT_S:.0f} s")
        time.sleep(POLL_S)
    return description


def run_map(ctx: BenchContext, machine_arn: str, prefix: str, count: int, tag: str) -> dict[str, Any]:
    sfn = ctx.client("stepfunctions")
    request = BatchRequest(s3_bucket=BUCKET, prefix=prefix, results_prefix=f"{PREFIX}-results/{tag}",
                           latest_key=f"{PREFIX}-results/latest.json", classes=tuple(model_bench.CLASSES))  # fmt: skip
    began = time.perf_counter()
    arn = sfn.start_execution(stateMachineArn=machine_arn, input=request.to_json())["executionArn"]
    description = finished(lambda: sfn.describe_execution(executionArn=arn), "status", "RUNNING", f"execution {arn}")
    seconds = time.perf_counter() - began
    if description["status"] != "SUCCEEDED":
        raise RuntimeError(f"batch execution {arn} {description['status']}: {description.get('cause')}")
    summary = BatchSummary.from_json(description["output"])
    if summary.images != count or summary.errors:
        raise RuntimeError(f"the map classified {summary.images} images with {summary.errors} errors, not {count}")
    engine = (description["stopDate"] - description["startDate"]).total_seconds()
    return {"images": count, "seconds": round(seconds, 2), "engine_seconds": round(engine, 2),
            "collect_seconds": collect_seconds(sfn, arn),
            "images_per_second": round(count / seconds, 1), "routed": summary.routed}  # fmt: skip


def collect_seconds(sfn: Any, execution_arn: str) -> float | None:
    """How long the parent's CollectResults state ran (entered to exited, from the Standard execution's history):
    reading the ResultWriter's files and writing results.jsonl and the summary."""
    events = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    times = {
        event["type"]: event["timestamp"]
        for event in events
        for details in (event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails") or {},)
        if details.get("name") == "CollectResults"
    }
    entered, exited = times.get("TaskStateEntered"), times.get("TaskStateExited")
    return round((exited - entered).total_seconds(), 3) if entered and exited else None


def run_transform(ctx: BenchContext, model_name: str, prefix: str, count: int, tag: str) -> dict[str, Any]:
    sagemaker = ctx.client("sagemaker")
    plan = endpoint_bench.bench_plan(datetime.now(UTC).strftime("%Y%m%d-%H%M%S"))
    output = f"s3://{BUCKET}/{PREFIX}-transform/{tag}/"
    request = sagemaker_requests.transform_job(plan, f"s3://{BUCKET}/{prefix}", plan.name)
    request |= {"TransformJobName": f"{plan.name}-{tag}", "ModelName": model_name}
    request["TransformOutput"] = dict(request["TransformOutput"], S3OutputPath=output)
    began = time.perf_counter()
    sagemaker.create_transform_job(**request)
    name = request["TransformJobName"]
    job = finished(lambda: sagemaker.describe_transform_job(TransformJobName=name), "TransformJobStatus",
                   "InProgress", f"transform job {name}")  # fmt: skip
    seconds = time.perf_counter() - began
    if job["TransformJobStatus"] != "Completed":
        raise RuntimeError(f"transform job {request['TransformJobName']}: {job.get('FailureReason')}")
    outputs = sum(len(page.get("Contents", [])) for page in ctx.s3.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=f"{PREFIX}-transform/{tag}/"))  # fmt: skip
    if outputs != count:
        raise RuntimeError(f"transform job wrote {outputs} outputs for {count} images")
    job_seconds = (job["TransformEndTime"] - job["TransformStartTime"]).total_seconds()
    return {"images": count, "seconds": round(seconds, 2), "job_seconds": round(job_seconds, 2),
            "images_per_second": round(count / seconds, 1)}  # fmt: skip


def median_runs(runs: dict[int, list[dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    """The median run (by wall time) of each size."""
    return {count: sorted(rs, key=lambda r: r["seconds"])[len(rs) // 2] for count, rs in runs.items()}


def run(ctx: BenchContext) -> dict[str, Any]:
    measured_at = utc_now()
    deployed = endpoint_bench.deploy(ctx, model_bench.trained_model(ctx))
    log("deploying the bench Lambdas and the batch state machine")
    machine_arn = deploy(ctx)
    stamp = datetime.now(UTC).strftime("%H%M%S")
    prefixes = {count: upload_images(ctx, count) for count in (WARMUP_IMAGES, *SIZES)}
    run_map(ctx, machine_arn, prefixes[WARMUP_IMAGES], WARMUP_IMAGES, f"{stamp}-warmup")
    load_before = load_average()
    all_maps: dict[int, list[dict[str, Any]]] = {count: [] for count in SIZES}
    all_transforms: dict[int, list[dict[str, Any]]] = {count: [] for count in SIZES}
    for repeat in range(REPEATS):
        for count in SIZES:
            log(f"round {repeat + 1}/{REPEATS}, {count} images: the Distributed Map, then a batch transform of them")
            tag = f"{stamp}-{repeat}-{count}"
            all_maps[count].append(run_map(ctx, machine_arn, prefixes[count], count, tag))
            all_transforms[count].append(run_transform(ctx, deployed["model_name"], prefixes[count], count, tag))
    maps, transforms = median_runs(all_maps), median_runs(all_transforms)
    small, large = SIZES
    result: dict[str, Any] = {"measured_at": measured_at}
    for name, runs in (("map", maps), ("transform", transforms)):
        for count in SIZES:
            result[f"{name}_{count}_images_per_second"] = runs[count]["images_per_second"]
        result[f"{name}_growth_{small}_to_{large}"] = round(
            runs[large]["images_per_second"] / runs[small]["images_per_second"], 2
        )
        per_image = (runs[large]["seconds"] - runs[small]["seconds"]) / (large - small)
        result[f"{name}_per_image_ms"] = round(per_image * 1000, 2)
        result[f"{name}_fixed_seconds"] = round(runs[small]["seconds"] - small * per_image, 2)
    result[f"map_to_transform_{large}"] = round(
        maps[large]["images_per_second"] / transforms[large]["images_per_second"], 2
    )
    return result | {
        "map_runs": {str(k): v for k, v in maps.items()},
        "transform_runs": {str(k): v for k, v in transforms.items()},
        "map_seconds_all": {str(k): [r["seconds"] for r in v] for k, v in all_maps.items()},
        "transform_seconds_all": {str(k): [r["seconds"] for r in v] for k, v in all_transforms.items()},
        "max_concurrency": json.loads(
            ctx.client("stepfunctions").describe_state_machine(stateMachineArn=machine_arn)["definition"]
        )["States"]["ClassifyEveryImage"]["MaxConcurrency"],
        "timing": "client wall time from the start call until done (execution SUCCEEDED / job Completed)",
        "load_average_before_after": [load_before, load_average()],
    }
