"""Read an offline W&B run file (`run-*.wandb`) without the network or a W&B server.

The file is a 7-byte header (':W&B', magic 0xBEE1, version) followed by LevelDB-log framed records
(32 KiB blocks; each chunk has a 7-byte header: crc32c, little-endian length, type FULL/FIRST/
MIDDLE/LAST) whose payloads are `wandb_internal_pb2.Record` protobuf messages.

A run started again in its folder (resumed after a kill) has one run file per start, all with its id.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Iterator

BLOCK_SIZE = 32 * 1024
FILE_HEADER = struct.Struct("<4sHB")
CHUNK_HEADER = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_payloads(path: Path) -> Iterator[bytes]:
    data = Path(path).read_bytes()
    ident, magic, _version = FILE_HEADER.unpack_from(data, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path} is not a W&B run file")
    pos, pending = FILE_HEADER.size, b""
    while pos + CHUNK_HEADER.size <= len(data):
        left_in_block = BLOCK_SIZE - pos % BLOCK_SIZE
        if left_in_block < CHUNK_HEADER.size:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = CHUNK_HEADER.unpack_from(data, pos)
        if kind == 0:  # zero-filled rest of a block
            pos += left_in_block
            continue
        pos += CHUNK_HEADER.size
        if pos + length > len(data):  # the last record of a process killed while W&B wrote it
            return
        chunk = data[pos:pos + length]
        pos += length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""
        else:
            raise ValueError(f"{path}: bad record type {kind} at byte {pos}")


def read_records(path: Path):
    from wandb.proto import wandb_internal_pb2

    for payload in read_payloads(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        yield record


def read_history(path: Path) -> list[dict]:
    """The logged rows (wandb.log calls), each a dict of key -> decoded value; a logged image's fields
    (W&B stores them under nested keys) are one dict under the key it was logged with."""
    rows = []
    for record in read_records(path):
        if record.WhichOneof("record_type") == "history":
            row = {}
            for item in record.history.item:
                *parents, key = [item.key] if item.key else item.nested_key
                inner = row
                for parent in parents:
                    inner = inner.setdefault(parent, {})
                inner[key] = json.loads(item.value_json)
            rows.append(row)
    return rows


def read_summary(path: Path) -> dict:
    """The run's summary as last written (summary updates, and the metric definitions' results)."""
    summary = {}
    for record in read_records(path):
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return summary


def read_metric_definitions(path: Path) -> dict[str, str]:
    """metric name -> its summary aggregation(s) as defined with define_metric."""
    from wandb.proto import wandb_internal_pb2

    definitions = {}
    for record in read_records(path):
        if record.WhichOneof("record_type") == "metric":
            summary = record.metric.summary
            kinds = [k for k in ("min", "max", "mean", "last", "best", "first") if getattr(summary, k, False)]
            definitions[record.metric.name] = ",".join(kinds)
    return definitions


def find_run_files(run_dir: Path, run_id: str = "*") -> list[Path]:
    """The run files under <run_dir>/wandb (those of `run_id` if given), oldest first: a folder is named
    [offline-]run-<start time>-<id>, and online and offline starts sort together by their start time."""
    files = Path(run_dir).glob(f"wandb/*run-*/run-{run_id}.wandb")
    return sorted(files, key=lambda path: path.parent.name.split("run-", 1)[1])


def find_run_file(run_dir: Path) -> Path:
    """The newest run file: the last start's."""
    files = find_run_files(run_dir)
    if not files:
        raise FileNotFoundError(f"no W&B run file under {run_dir}/wandb")
    return files[-1]
