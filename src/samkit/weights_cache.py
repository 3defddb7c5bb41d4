"""Known SAM weights, the local cache they live in, and a verified download into it.

Downloads stream to a `*.part` file next to the target while hashing, and are renamed into
place only when the sha256 matches, so the cache never holds a partial or wrong file.
`samkit.checkpoints` re-exports everything here; import it from there.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ._atomic import create_sibling

# Overrides the download location: files are fetched from f"{mirror}/{filename}".
MIRROR_ENV = "SAMKIT_WEIGHTS_MIRROR"
_CHUNK = 1 << 20  # read 1 MiB at a time: few syscalls, little memory


class DownloadError(RuntimeError):
    """A weights file could not be fetched, or what arrived is not the expected file."""


@dataclass(frozen=True)
class WeightInfo:
    """Where a weights file comes from and how to recognise it.

    name: registry key ("vit_b"); variant: the `sam_model_registry` builder it fits;
    sha256: hex digest of the whole file, or None when the host declares it at download
    time (Hugging Face: see `declared_sha256`); size: bytes, or None when unknown.
    """

    name: str
    variant: str
    url: str
    sha256: str | None
    filename: str
    size: int | None


_FAIR = "https://dl.fbaipublicfiles.com/segment_anything"
_MOBILE_SAM = (
    "https://raw.githubusercontent.com/ChaoningZhang/MobileSAM/"
    "f706ad9c4eb7f219c00d9050e46328518ffb65d2"
)
# The official SAM 1 checkpoints, then MobileSAM's. The official sha256 sums are the ones
# micro-sam pins in `_CHECKSUMS` (computational-cell-analytics/micro-sam, micro_sam/util.py)
# and agree with several independent download manifests; the byte sizes agree across those
# manifests.
KNOWN_WEIGHTS: dict[str, WeightInfo] = {
    info.name: info
    for info in (
        WeightInfo(
            name="vit_h",
            variant="vit_h",
            url=f"{_FAIR}/sam_vit_h_4b8939.pth",
            sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            filename="sam_vit_h_4b8939.pth",
            size=2_564_550_879,
        ),
        WeightInfo(
            name="vit_l",
            variant="vit_l",
            url=f"{_FAIR}/sam_vit_l_0b3195.pth",
            sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            filename="sam_vit_l_0b3195.pth",
            size=1_249_524_607,
        ),
        WeightInfo(
            name="vit_b",
            variant="vit_b",
            url=f"{_FAIR}/sam_vit_b_01ec64.pth",
            sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            filename="sam_vit_b_01ec64.pth",
            size=375_042_383,
        ),
        # MobileSAM (TinyViT encoder), from its GitHub repository at a pinned commit. The
        # sha256 and size agree across several independent projects that pin this file
        # (e.g. micro-sam's `_CHECKSUMS["vit_t"]` and MobileSAM integrations that pin commit
        # f706ad9c with size 40,728,226 bytes).
        WeightInfo(
            name="vit_t",
            variant="vit_t",
            url=f"{_MOBILE_SAM}/weights/mobile_sam.pt",
            sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
            filename="mobile_sam.pt",
            size=40_728_226,
        ),
        # Hugging Face's facebook/sam-vit-{base,large,huge} (model.safetensors, transformers'
        # SamModel layout). No sha256 for them could be confirmed from a source readable here,
        # so the hub's own declaration is used: it answers a HEAD request for a large file
        # with the file's sha256 in `X-Linked-Etag` (its LFS object id), and the download must
        # match it. The files are safetensors, which hold no code.
        *(
            WeightInfo(
                name=f"hf_{variant}",
                variant=variant,
                url=f"https://huggingface.co/facebook/sam-vit-{size}/resolve/main/model.safetensors",
                sha256=None,
                filename=f"sam-vit-{size}.safetensors",
                size=None,
            )
            for variant, size in (("vit_b", "base"), ("vit_l", "large"), ("vit_h", "huge"))
        ),
    )
}


def cache_dir() -> Path:
    """samkit's cache folder: `$SAMKIT_HOME`, else `$XDG_CACHE_HOME/samkit`, else
    `~/.cache/samkit`. Weights live in its `weights/` subfolder."""
    if home := os.environ.get("SAMKIT_HOME"):
        return Path(home).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "samkit"
    return Path.home() / ".cache" / "samkit"


def _weights_dir() -> Path:
    return cache_dir() / "weights"


def _resolve(name_or_info: str | WeightInfo) -> WeightInfo:
    """The `WeightInfo` for a registry name (or the info itself)."""
    if isinstance(name_or_info, WeightInfo):
        return name_or_info
    try:
        return KNOWN_WEIGHTS[name_or_info]
    except KeyError:
        raise ValueError(
            f"unknown weights {name_or_info!r}; known: {', '.join(KNOWN_WEIGHTS)}"
        ) from None


def cached_path(name_or_info: str | WeightInfo) -> Path | None:
    """Path of the weights file in the cache, or None if absent or of the wrong size.

    Only existence and size are checked (hashing gigabytes on every load is too slow);
    the full sha256 check happens once, at download.
    """
    info = _resolve(name_or_info)
    path = _weights_dir() / info.filename
    if not path.is_file():
        return None
    if info.size is not None and path.stat().st_size != info.size:
        return None
    return path


def _source_url(info: WeightInfo) -> str:
    """The URL to fetch `info` from: its own, or the file under `$SAMKIT_WEIGHTS_MIRROR`."""
    if mirror := os.environ.get(MIRROR_ENV):
        return f"{mirror.rstrip('/')}/{info.filename}"
    return info.url


def download(name_or_info: str | WeightInfo, *, progress: bool = True, timeout: float = 60) -> Path:
    """Return the cached weights file, downloading and verifying it first if needed.

    timeout: seconds to wait for the connection and for each read. Raises `DownloadError`
    when the file cannot be fetched or its sha256 differs; nothing is left in the cache then.
    """
    info = _resolve(name_or_info)
    if (hit := cached_path(info)) is not None:
        return hit
    target = _weights_dir() / info.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    url = _source_url(info)
    # A unique *.part name, so two processes downloading at once never share a file.
    fd, part = create_sibling(target, ".part")
    try:
        with os.fdopen(fd, "wb") as out:
            expected = info.sha256 or declared_sha256(url, timeout=timeout)
            digest, nbytes = _fetch(url, out, info, progress=progress, timeout=timeout)
            out.flush()
            os.fsync(out.fileno())
        _check_digest(info, url, digest, nbytes, expected)
        os.replace(part, target)
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
        raise DownloadError(_unreachable_message(info, url, target, e)) from e
    finally:
        part.unlink(missing_ok=True)
    return target


def _fetch(
    url: str, out: IO[bytes], info: WeightInfo, *, progress: bool, timeout: float
) -> tuple[str, int]:
    """Stream `url` into `out`; return the sha256 hex digest and the byte count."""
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "samkit"})
    sha = hashlib.sha256()
    nbytes = 0
    with urllib.request.urlopen(request, timeout=timeout) as response:
        total = _content_length(response) or info.size
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=info.filename,
            disable=not progress,
        ) as bar:
            while chunk := response.read(_CHUNK):
                sha.update(chunk)
                out.write(chunk)
                nbytes += len(chunk)
                bar.update(len(chunk))
    return sha.hexdigest(), nbytes


def _content_length(response: Any) -> int | None:
    """The response's Content-Length, or None when missing or malformed."""
    value = response.headers.get("Content-Length")
    return int(value) if value is not None and value.isdigit() else None


def _check_digest(info: WeightInfo, url: str, digest: str, nbytes: int, expected: str) -> None:
    """Raise `DownloadError` unless the downloaded bytes have the `expected` sha256."""
    if digest == expected.lower():
        return
    size = f"{info.size} bytes" if info.size is not None else "unknown size"
    raise DownloadError(
        f"the file downloaded from {url} is not the expected {info.filename}: "
        f"sha256 {digest} ({nbytes} bytes), expected {expected} ({size}). "
        "The download was discarded; retry, or check the server or mirror serving it."
    )


def _unreachable_message(info: WeightInfo, url: str, target: Path, error: Exception) -> str:
    """What went wrong fetching `url`, and the two ways to get the file anyway."""
    if isinstance(error, urllib.error.HTTPError):
        reason = f"HTTP {error.code} {error.reason}"
    elif isinstance(error, urllib.error.URLError):
        reason = str(error.reason)
    else:
        reason = f"{type(error).__name__}: {error}"
    return (
        f"could not fetch {url} ({reason}). Either download {info.filename} yourself and "
        f"place it at {target} (sha256 {info.sha256 or 'as the host declares it'}), or set "
        f"{MIRROR_ENV} to a server that serves {info.filename}."
    )


class _KeepRedirect(urllib.request.HTTPRedirectHandler):
    """Do not follow redirects: the headers wanted are on the redirect itself."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_SHA256 = re.compile(r"[0-9a-f]{64}")


def declared_sha256(url: str, *, timeout: float = 60) -> str:
    """The sha256 the host declares for the file at `url`, from a HEAD request.

    Hugging Face answers `/resolve/` requests for large (LFS or Xet) files with a redirect
    carrying `X-Linked-Etag: "<sha256 of the file>"`; other hosts may send the digest as a
    plain `ETag`. Raises `DownloadError` when no sha256 is declared: an unverifiable file is
    never downloaded.
    """
    request = urllib.request.Request(
        url, method="HEAD", headers={"User-Agent": "samkit", "Accept-Encoding": "identity"}
    )
    try:
        with urllib.request.build_opener(_KeepRedirect).open(request, timeout=timeout) as r:
            headers = r.headers
    except urllib.error.HTTPError as e:
        if e.code not in (301, 302, 303, 307, 308):
            raise
        headers = e.headers
    value = headers.get("X-Linked-Etag") or headers.get("ETag") or ""
    digest = value.removeprefix("W/").strip('"').lower()
    if not _SHA256.fullmatch(digest):
        raise DownloadError(
            f"{url} declares no sha256 for its file (X-Linked-Etag/ETag: {value!r}); "
            "refusing a download that cannot be verified"
        )
    return digest
