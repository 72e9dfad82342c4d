"""`.lst` manifests, the format of SageMaker's image-classification tooling: `index<TAB>label<TAB>path` per line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


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
