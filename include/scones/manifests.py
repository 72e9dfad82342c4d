"""`.lst` manifests, the format of SageMaker's image-classification tooling: `index<TAB>label<TAB>path` per line."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LstRow:
    index: int
    label: int
    filename: str


def format_lst(rows: Iterable[LstRow]) -> str:
    return "".join(f"{row.index}\t{row.label}\t{row.filename}\n" for row in rows)


def parse_lst(text: str, source: str = "<lst>") -> list[LstRow]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(f"{source}:{number}: expected 'index<TAB>label<TAB>filename', got {line!r}")
        try:
            rows.append(LstRow(index=int(parts[0]), label=int(float(parts[1])), filename=parts[2]))
        except ValueError:
            raise ValueError(f"{source}:{number}: index and label must be numbers, got {line!r}") from None
    return rows


def read_lst(path: Path) -> list[LstRow]:
    return parse_lst(path.read_text(), str(path))


@dataclass(frozen=True)
class SplitKeys:
    """Where one split of the channels lives under the dataset's S3 prefix, as transform.py writes it."""

    prefix: str  # ".../<dataset id>/", ending in "/"
    split: str = "test"

    @property
    def lst(self) -> str:
        return f"{self.prefix}{self.split}/{self.split}.lst"

    @property
    def classes(self) -> str:
        return f"{self.prefix}{self.split}/classes.json"

    @property
    def images(self) -> str:
        return f"{self.prefix}{self.split}/images/"


def read_split(hook: Any, data_uri: str, split: str = "test") -> tuple[str, SplitKeys, list[LstRow], list[str]]:
    """A split's bucket, keys, rows and class names through an S3Hook (the test split: what evaluation scores and
    the smoke executions use)."""
    bucket, prefix = hook.parse_s3_url(data_uri)
    keys = SplitKeys(prefix, split)
    rows = parse_lst(hook.read_key(keys.lst, bucket_name=bucket), keys.lst)
    classes = [str(name) for name in json.loads(hook.read_key(keys.classes, bucket_name=bucket))]
    return bucket, keys, rows, classes
