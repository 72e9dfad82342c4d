"""Synthetic data-capture traffic for tests and the scale benchmark: seeded, spread evenly over a span of hours,
with a chosen share of low-confidence predictions and a chosen predicted class mix. Lines have the shape of
contracts doc section 5 (InputAndOutput, PNG input as BASE64, JSON output); the input is a tiny valid PNG, of
its own colour per event."""

from __future__ import annotations

import base64
import json
import random
import struct
import uuid
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from include.scones import evaluation
from include.scones.monitoring.capture import floor_hour, utc_text
from include.scones.params import defaults

CONFIDENCE_THRESHOLD = float(defaults()["confidence_threshold"])  # the Param's default: the one value


def tiny_png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 120, 40)) -> bytes:
    """A valid RGB PNG of one colour, built without Pillow."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))  # filter type 0 per row
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


TINY_PNG = tiny_png()


def event_colour(index: int) -> tuple[int, int, int]:
    """A colour per event, different for the first 2**24 events (an odd multiplier permutes the residues mod
    2**24) and far apart for neighbours, so each synthetic request carries an image of its own, as real ones do."""
    value = (index * 0x9E3779B1) % (1 << 24)
    return value >> 16, (value >> 8) & 0xFF, value & 0xFF


def capture_line(
    when: datetime,
    probabilities: Sequence[float] | object,
    *,
    image: bytes | None = TINY_PNG,
    output_encoding: str = "JSON",
    event_id: str | None = None,
    inference_id: str | None = None,
) -> str:
    """One capture record as a JSON line. `probabilities` is written as given (tests pass malformed values)."""
    output_text = json.dumps(probabilities)
    if output_encoding == "BASE64":
        output_text = base64.b64encode(output_text.encode()).decode("ascii")
    capture = {
        "endpointOutput": {
            "observedContentType": "application/json",
            "mode": "OUTPUT",
            "data": output_text,
            "encoding": output_encoding,
        }
    }
    if image is not None:
        capture["endpointInput"] = {
            "observedContentType": "image/png",
            "mode": "INPUT",
            "data": base64.b64encode(image).decode("ascii"),
            "encoding": "BASE64",
        }
    metadata = {"eventId": event_id or str(uuid.uuid4()), "inferenceTime": utc_text(when.replace(microsecond=0))}
    if inference_id:
        metadata["inferenceId"] = inference_id
    return json.dumps({"captureData": capture, "eventMetadata": metadata, "eventVersion": "0"})


@dataclass(frozen=True)
class Traffic:
    """What the synthetic endpoint sees: `records` predictions evenly spread over `hours` from `start`."""

    records: int
    start: datetime
    hours: int = 24
    classes: tuple[str, ...] = ("bicycle", "motorcycle")
    class_mix: tuple[float, ...] | None = None  # share predicted per class; None means equal shares
    low_confidence_share: float = 0.2
    threshold: float = CONFIDENCE_THRESHOLD
    seed: int = 0
    inference_ids: bool = False  # name each record `synthetic-<seed>-<index>` (eventMetadata.inferenceId)

    def inference_id(self, index: int) -> str | None:
        return f"synthetic-{self.seed}-{index}" if self.inference_ids else None

    def events(self) -> Iterator[tuple[datetime, list[float]]]:
        """(inference time, probabilities), in time order. A low-confidence prediction's top probability is
        uniform in [1/classes, threshold), a confident one's in [threshold, 1]."""
        rng = random.Random(self.seed)
        n = len(self.classes)
        weights = list(self.class_mix) if self.class_mix is not None else [1.0] * n
        step = timedelta(hours=self.hours) / max(self.records, 1)
        for i in range(self.records):
            predicted = rng.choices(range(n), weights)[0]
            if rng.random() < self.low_confidence_share:
                confidence = rng.uniform(1 / n, self.threshold - 1e-6)
            else:
                confidence = rng.uniform(self.threshold, 1.0)
            rest = (1 - confidence) / (n - 1) if n > 1 else 0.0
            probabilities = [confidence if c == predicted else rest for c in range(n)]
            yield self.start + i * step, probabilities

    def baseline(self, records: int = 5000, seed: int = 99) -> dict[str, object]:
        """The evaluation.json `baseline` a model with this traffic profile would have had: measured with
        evaluation's own histogram on `records` other predictions (another seed)."""
        events = list(replace(self, records=records, seed=seed).events())
        confidences = [max(probabilities) for _, probabilities in events]
        predicted = [max(range(len(p)), key=p.__getitem__) for _, p in events]
        return {
            "confidence_bin_edges": evaluation.CONFIDENCE_BIN_EDGES,
            "confidence_shares": evaluation.confidence_histogram(confidences),
            "class_mix": {name: predicted.count(i) / records for i, name in enumerate(self.classes)},
            "below_threshold_share": sum(c < self.threshold for c in confidences) / records,
        }

    def timed_lines(self) -> Iterator[tuple[datetime, str]]:
        ids = random.Random(self.seed + 1)
        for index, (when, probabilities) in enumerate(self.events()):
            event_id = str(uuid.UUID(int=ids.getrandbits(128)))
            image = tiny_png(rgb=event_colour(index))
            yield when, capture_line(when, probabilities, image=image, event_id=event_id,
                                     inference_id=self.inference_id(index))  # fmt: skip

    def lines(self) -> Iterator[str]:
        return (line for _, line in self.timed_lines())

    def write_files(self, root: Path, prefix: str, endpoint: str, variant: str = "AllTraffic") -> list[Path]:
        """One `.jsonl` file per hour under `root` in the capture key layout; returns the paths in time order."""
        paths: list[Path] = []
        handle = None
        current = None
        try:
            for when, line in self.timed_lines():
                hour = floor_hour(when)
                if hour != current:
                    if handle is not None:
                        handle.close()
                    folder = root / prefix / endpoint / variant / f"{hour:%Y/%m/%d/%H}"
                    folder.mkdir(parents=True, exist_ok=True)
                    paths.append(folder / f"00-00-000-{uuid.UUID(int=len(paths))}.jsonl")
                    handle = paths[-1].open("w", encoding="utf-8")
                    current = hour
                assert handle is not None
                handle.write(line + "\n")
        finally:
            if handle is not None:
                handle.close()
        return paths
