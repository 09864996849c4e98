"""Model files for the reliability suite: one tiny model that converts in seconds, models that
run into each sandbox limit, and hostile files (pickle payloads, a zip bomb, a truncated
archive, an archive declaring absurd sizes). All are built here; nothing is downloaded."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import torch
from torch import nn

TINY_SHAPE = (1, 3, 16, 16)


class Tiny(nn.Module):
    """A convolution and a classifier: the cheapest model worth converting."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


class MemoryHog(nn.Module):
    """Allocates 8 GiB on every call: over the worker's address-space limit."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.ones(2**31).sum()


class CpuHog(nn.Module):
    """Twenty 4096x4096 matrix products per call: minutes of CPU on one thread."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.ones(4096, 4096) / 4096
        b = a
        for _ in range(20):
            b = torch.tanh(b @ a)
        return x + b.sum()


class FileHog(nn.Module):
    """6 MiB of float weights: its .pte is larger than the worker's file-size limit."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1024, 1536)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class Payload:
    """Unpickling this creates ``marker``: proof that code in the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def _export(module: nn.Module, shape: tuple[int, ...], path: Path) -> Path:
    torch.manual_seed(0)
    module.eval()
    torch.export.save(torch.export.export(module, (torch.zeros(shape),)), path)
    return path


def build_models(root: Path) -> dict[str, Path]:
    """Write the well-behaved and limit-hitting models under ``root``."""
    torch.manual_seed(0)
    return {
        "tiny": _export(Tiny(), TINY_SHAPE, root / "tiny.pt2"),
        "memory": _export(MemoryHog(), (1, 4), root / "memory-hog.pt2"),
        "cpu": _export(CpuHog(), (1, 4), root / "cpu-hog.pt2"),
        "file": _export(FileHog(), (1, 1024), root / "file-hog.pt2"),
    }


def pickle_state_dict(path: Path, marker: Path) -> Path:
    """A torch.save state_dict whose one tensor is a payload."""
    torch.save({"conv1.weight": Payload(marker)}, path)
    return path


def truncated(source: Path, path: Path) -> Path:
    """The first half of a valid archive."""
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def absurd_sizes(source: Path, path: Path) -> Path:
    """A valid archive whose central directory claims every entry is almost 4 GiB."""
    data = bytearray(source.read_bytes())
    offset = data.find(b"PK\x01\x02")
    while offset != -1:
        struct.pack_into("<I", data, offset + 24, 0xFFFF0000)
        offset = data.find(b"PK\x01\x02", offset + 4)
    path.write_bytes(bytes(data))
    return path


def zip_bomb(path: Path, entries: int = 20, entry_bytes: int = 256 * 1024**2) -> Path:
    """A real zip bomb: ``entries`` deflated runs of zeros, 5 GiB inflated by default, from
    a file of a few MiB. Written by hand so one compressed run is reused for every entry."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1 << 20)
    parts, crc = [], 0
    for _ in range(entry_bytes // len(chunk)):
        parts.append(compressor.compress(chunk))
        crc = zlib.crc32(chunk, crc)
    parts.append(compressor.flush())
    payload = b"".join(parts)

    local, central = bytearray(), bytearray()
    for index in range(entries):
        name = f"bomb/data/{index}".encode()
        offset = len(local)
        fields = (20, 0, 8, 0, 0x21, crc, len(payload), entry_bytes, len(name), 0)
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields) + name + payload
        central += (
            struct.pack("<IH", 0x02014B50, 20)
            + struct.pack("<HHHHHIIIHHHHHII", *fields, 0, 0, 0, 0, offset)
            + name
        )
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, entries, entries, len(central), len(local), 0)
    path.write_bytes(bytes(local + central + end))
    return path
