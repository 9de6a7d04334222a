"""Weights registry, cache, verification, import and download.

Where weights come from, in the order a name is looked up:

1. the registry `weights/manifest.json`, shipped inside the package as `s2ccrop._weights` (plus an
   optional extra manifest named by ``S2CCROP_MANIFEST``, e.g. a company mirror). An entry's file is
   looked for beside the manifest (embedded in the package), then in the cache; an entry with a `url`
   is downloaded into the cache on first use unless ``S2CCROP_OFFLINE=1``;
2. files imported with `s2ccrop weights import FILE --name NAME`: copied into the cache with a small
   JSON record (`<name>.json`) holding the sha256 taken at import time;
3. a path to a checkpoint file.

Cache layout: ``$S2CCROP_CACHE`` or platformdirs' user cache dir for "s2ccrop", then
``weights/<file>`` for downloads and ``weights/<name>.<ext>`` + ``weights/<name>.json`` for imports.

Every load of a registered name hashes the file and compares it with the pinned sha256, so a truncated
or tampered cache file is refused (with the command that fixes it) instead of trusted forever.
This module imports torch only to inspect a file being imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import envvars
from .checkpoint_files import check_metadata, inspect_checkpoint, is_safetensors
from .errors import WeightsError

ENV_CACHE, ENV_OFFLINE, ENV_MANIFEST = envvars.CACHE, envvars.OFFLINE, envvars.MANIFEST
MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20

Progress = Callable[[int, "int | None"], None]  # (bytes done, total or None)


# ---------------------------------------------------------------- locations


def cache_dir() -> Path:
    """The cache root: $S2CCROP_CACHE, else the platform's user cache dir."""
    env = envvars.path(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("s2ccrop", appauthor=False))


def weights_cache_dir() -> Path:
    return cache_dir() / "weights"


def ensure_cache_dir() -> Path:
    """The weights cache folder, created if needed; WeightsError naming it when it cannot be (a file in
    the way, no permission)."""
    folder = weights_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        where = f"${ENV_CACHE}" if envvars.path(ENV_CACHE) else "the platform's cache folder"
        raise WeightsError(
            f"cannot use the weights cache {folder}: {(exc.strerror or str(exc)).lower()} (it is below {where}; "
            f"set {ENV_CACHE} to a folder you can write)"
        ) from None
    return folder


def embedded_dir() -> Path:
    """The folder holding the shipped manifest: package data when installed, else the checkout's weights/."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("s2ccrop._weights")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if (Path(location) / MANIFEST_NAME).is_file():
                return Path(location)
    return Path(__file__).resolve().parent.parent / "weights"


def offline() -> bool:
    return envvars.switch(ENV_OFFLINE)


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class Entry:
    """One registered checkpoint. `base` is the folder of the manifest that listed it. A manifest's
    "license" and "provenance" are for people reading it; no code reads them."""

    name: str
    file: str
    sha256: str | None
    base: Path
    url: str | None = None
    size: int | None = None
    config: str | None = None
    description: str = ""
    source: str = "registry"  # "registry" or "imported"

    @property
    def embedded_path(self) -> Path:
        return self.base / self.file

    @property
    def cached_path(self) -> Path:
        return weights_cache_dir() / self.file


@dataclass
class Registry:
    default: str | None
    entries: dict[str, Entry] = field(default_factory=dict)

    def names(self) -> list[str]:
        return list(self.entries)


def load_manifest(path: Path) -> Registry:
    """Parse and validate one manifest file (format: see weights/README in docs)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(f"weights manifest {path} is missing; reinstall s2ccrop") from None
    except (OSError, ValueError) as exc:
        raise WeightsError(f"weights manifest {path} is unreadable: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA:
        raise WeightsError(f"weights manifest {path}: expected an object with \"schema\": {MANIFEST_SCHEMA}")
    entries = {}
    for name, raw in (data.get("weights") or {}).items():
        entries[name] = _entry(path, name, raw)
    default = data.get("default")
    if default is not None and default not in entries:
        raise WeightsError(f"weights manifest {path}: default {default!r} is not one of its entries")
    return Registry(default, entries)


def _entry(manifest: Path, name: str, raw: object) -> Entry:
    where = f"weights manifest {manifest}, entry {name!r}"
    if not _NAME_RE.match(name) or not isinstance(raw, dict):
        raise WeightsError(f"{where}: invalid name or entry")
    file = raw.get("file")
    if not isinstance(file, str) or not file or "/" in file or "\\" in file or file.startswith("."):
        raise WeightsError(f"{where}: \"file\" must be a plain file name")
    sha = raw.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA_RE.match(sha)):
        raise WeightsError(f"{where}: \"sha256\" must be 64 lowercase hex digits or null")
    url = raw.get("url")
    if url is not None and not (isinstance(url, str) and url.split(":", 1)[0] in ("http", "https", "file")):
        raise WeightsError(f"{where}: \"url\" must be an http(s) or file URL or null")
    if url is not None and sha is None:
        raise WeightsError(f"{where}: a downloadable entry needs a pinned \"sha256\"")
    size = raw.get("size")
    return Entry(
        name=name,
        file=file,
        sha256=sha,
        base=manifest.parent,
        url=url,
        size=size if isinstance(size, int) and size > 0 else None,
        config=raw.get("config"),
        description=str(raw.get("description", "")),
    )


def registry() -> Registry:
    """The shipped manifest, the extra manifest ($S2CCROP_MANIFEST) over it, then imported weights."""
    reg = load_manifest(embedded_dir() / MANIFEST_NAME)
    extra = envvars.path(ENV_MANIFEST)
    if extra:
        more = load_manifest(Path(extra).expanduser())
        reg.entries.update(more.entries)
        reg.default = more.default or reg.default
    for entry in _imported_entries():
        reg.entries.setdefault(entry.name, entry)  # a registry name always wins over an import
    return reg


def _imported_entries() -> list[Entry]:
    folder = weights_cache_dir()
    if not folder.is_dir():
        return []
    out = []
    for record in sorted(folder.glob("*.json")):
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
            out.append(
                Entry(
                    name=data["name"],
                    file=data["file"],
                    sha256=data["sha256"],
                    base=folder,
                    config=data.get("config"),
                    description=data.get("description", f"imported from {data.get('imported_from', '?')}"),
                    source="imported",
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged record hides that import; `weights list` still shows the registry
    return out


def default_name() -> str | None:
    return registry().default


# ---------------------------------------------------------------- hashing and verification


def sha256_file(path: "str | os.PathLike[str]") -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, expected: str, fix: str) -> str:
    """Hash `path`; raise WeightsError naming `fix` unless it matches `expected`."""
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read weights ({exc.strerror or exc}); {fix}") from None
    if actual != expected:
        raise WeightsError(
            f"{path}: sha256 {actual[:12]}… does not match the pinned {expected[:12]}…: "
            f"the file is corrupt, truncated or was modified; {fix}"
        )
    return actual


# ---------------------------------------------------------------- resolution


@dataclass(frozen=True)
class Resolved:
    """A checkpoint ready to load: its registry name (None for a plain path), file, sha256, origin."""

    name: str | None
    path: Path
    sha256: str
    source: str  # "embedded", "cache", "imported" or "file"

    def __fspath__(self) -> str:  # usable wherever a path is expected
        return os.fspath(self.path)

    def info(self) -> dict:
        return {"weights": self.name or str(self.path), "path": str(self.path), "sha256": self.sha256, "source": self.source}


def resolve(
    name_or_path: "str | os.PathLike[str] | None" = None,
    *,
    download: bool = True,
    progress: Progress | None = None,
) -> Resolved:
    """The verified checkpoint behind a registry name, an existing path, or None for the default.

    Registered files are hashed on every call; an entry with a URL is downloaded on first use unless
    `download` is false or S2CCROP_OFFLINE=1. Raises WeightsError naming the fix.
    """
    reg = registry()
    if name_or_path is None:
        if reg.default is None:
            raise WeightsError(
                "this installation has no default weights; pass --weights NAME|PATH "
                "(see `s2ccrop weights list`, or `s2ccrop weights import FILE --name NAME`)"
            )
        name_or_path = reg.default
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if text in reg.entries and not _looks_like_path(text):
        return _locate_entry(reg.entries[text], download=download, progress=progress)
    if path.is_file():
        check_metadata(path)
        return Resolved(None, path, sha256_file(path), "file")
    if _looks_like_path(text):
        raise WeightsError(f"{text}: no such weights file")
    known = ", ".join(reg.names()) or "none"
    raise WeightsError(f"unknown weights {text!r} (known: {known}); give a registry name or a checkpoint path")


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.endswith((".safetensors", ".pth", ".pt", ".bin"))


def _locate_entry(entry: Entry, *, download: bool, progress: Progress | None) -> Resolved:
    present = entry.embedded_path.is_file() or entry.cached_path.is_file()
    if entry.sha256 is None and (present or entry.source == "imported"):
        raise WeightsError(
            f"weights {entry.name!r} have no sha256 pinned in {entry.base / MANIFEST_NAME}; "
            "they cannot be verified, so they are not loaded (pin it, or pass --weights PATH)"
        )
    if entry.source == "imported":
        fix = f"import it again with `s2ccrop weights import FILE --name {entry.name} --force`"
        return Resolved(entry.name, entry.embedded_path, verify_file(entry.embedded_path, entry.sha256, fix), "imported")
    if entry.embedded_path.is_file():
        fix = "reinstall s2ccrop (pip install --force-reinstall s2ccrop)"
        return Resolved(entry.name, entry.embedded_path, verify_file(entry.embedded_path, entry.sha256, fix), "embedded")
    cached = entry.cached_path
    if cached.is_file():
        fix = (
            f"run `s2ccrop weights download {entry.name} --force`"
            if entry.url
            else f"delete {cached} and import a good copy with `s2ccrop weights import FILE --name {entry.name}`"
        )
        return Resolved(entry.name, cached, verify_file(cached, entry.sha256, fix), "cache")
    if entry.url is None:
        raise WeightsError(
            f"the built-in weights {entry.name!r} are not in this installation (expected {entry.embedded_path}); "
            f"reinstall s2ccrop, import a copy with `s2ccrop weights import FILE --name {entry.name}`, "
            "or choose others with --weights NAME|PATH (see `s2ccrop weights list`)"
        )
    if not download:
        raise WeightsError(f"weights {entry.name!r} are not downloaded yet; run `s2ccrop weights download {entry.name}`")
    return Resolved(entry.name, download_entry(entry, progress=progress), entry.sha256, "cache")


# ---------------------------------------------------------------- download


def download(name: str, *, force: bool = False, progress: Progress | None = None, timeout: float = 60.0) -> Path:
    """Fetch the registered weights `name` into the cache (no-op when a verified copy is there)."""
    reg = registry()
    entry = reg.entries.get(name)
    if entry is None or entry.source == "imported":
        raise WeightsError(f"{name!r} is not a downloadable registry entry (see `s2ccrop weights list`)")
    if entry.url is None:
        raise WeightsError(f"weights {name!r} are shipped with s2ccrop and have no download URL")
    if not force and entry.cached_path.is_file():
        try:
            verify_file(entry.cached_path, entry.sha256 or "", "")
            return entry.cached_path
        except WeightsError:
            pass  # corrupt: fetch again below
    return download_entry(entry, progress=progress, timeout=timeout)


def download_entry(entry: Entry, *, progress: Progress | None = None, timeout: float = 60.0) -> Path:
    """Stream `entry.url` to a temporary file, verify sha256 (and size), then rename it into place.

    Two processes downloading at once each write their own temporary file and both rename a verified
    copy over the same name, so no lock is needed for correctness.
    """
    assert entry.url is not None and entry.sha256 is not None
    if offline():
        raise WeightsError(
            f"weights {entry.name!r} are not in the cache and {ENV_OFFLINE}=1 forbids downloading them; "
            f"unset {ENV_OFFLINE}, or fetch {entry.url} elsewhere and run "
            f"`s2ccrop weights import FILE --name {entry.name}`"
        )
    from .io.writers import atomic_write

    digest = hashlib.sha256()

    def fetch(fh) -> None:
        try:
            with urllib.request.urlopen(entry.url, timeout=timeout) as response:
                total = _content_length(response) or entry.size
                done = 0
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    done += len(chunk)
                    if entry.size and done > entry.size:
                        raise WeightsError(f"download of {entry.name!r} from {entry.url} is larger than the pinned size")
                    digest.update(chunk)
                    fh.write(chunk)
                    if progress:
                        progress(done, total)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if isinstance(exc, urllib.error.HTTPError):
                reason = f"HTTP {exc.code} {exc.reason}"
            else:
                reason = getattr(exc, "reason", None) or exc
            raise WeightsError(
                f"cannot download weights {entry.name!r} from {entry.url}: {reason}; check the network, "
                f"or fetch the file elsewhere and run `s2ccrop weights import FILE --name {entry.name}`"
            ) from None
        actual = digest.hexdigest()
        if actual != entry.sha256:
            raise WeightsError(
                f"download of {entry.name!r} from {entry.url} failed verification (sha256 {actual[:12]}…, "
                f"pinned {entry.sha256[:12]}…); nothing was kept — retry, or report the mirror as broken"
            )

    ensure_cache_dir()
    target = entry.cached_path
    atomic_write(target, fetch)
    return target


def _content_length(response) -> int | None:
    try:
        value = int(response.headers.get("Content-Length", ""))
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


# ---------------------------------------------------------------- import


def import_weights(source: "str | os.PathLike[str]", name: str | None = None, *, force: bool = False) -> Resolved:
    """Copy a checkpoint into the cache under `name` after checking that it loads as S2CNet.

    A registry name is accepted only for the exact file the registry pins (the offline route for a
    download); any other name must be new unless `force`.
    """
    src = Path(source).expanduser()
    if not src.is_file():
        raise WeightsError(f"{src}: no such file")
    name = name or _name_from(src)
    if not _NAME_RE.match(name):
        raise WeightsError(f"invalid weights name {name!r}: use letters, digits, '.', '_' or '-' (max 64)")
    reg = registry()
    entry = reg.entries.get(name)
    sha = sha256_file(src)
    if entry is not None and entry.source != "imported":
        return _import_registry_file(src, entry, sha)
    config = inspect_checkpoint(src)
    folder = ensure_cache_dir()
    record = folder / f"{name}.json"
    if record.exists() and not force:
        raise WeightsError(f"weights {name!r} already exist in {folder}; pass --force to replace them")
    suffix = ".safetensors" if is_safetensors(src) else ".pth"
    dest = folder / f"{name}{suffix}"
    _copy_verified(src, dest, sha)
    info = {"name": name, "file": dest.name, "sha256": sha, "config": config, "imported_from": str(src.resolve())}
    from .io.writers import atomic_write

    atomic_write(record, lambda fh: fh.write(json.dumps(info, indent=2).encode() + b"\n"))
    return Resolved(name, dest, sha, "imported")


def _import_registry_file(src: Path, entry: Entry, sha: str) -> Resolved:
    if entry.sha256 != sha:
        raise WeightsError(
            f"{src} is not the file registered as {entry.name!r} (sha256 {sha[:12]}…, pinned "
            f"{(entry.sha256 or 'none')[:12]}…); import it under another --name"
        )
    ensure_cache_dir()
    _copy_verified(src, entry.cached_path, sha)
    return Resolved(entry.name, entry.cached_path, sha, "cache")


def _copy_verified(src: Path, dest: Path, sha: str) -> None:
    from .io.writers import atomic_write

    with open(src, "rb") as fh_in:
        atomic_write(dest, lambda fh_out: shutil.copyfileobj(fh_in, fh_out, _CHUNK))
    try:
        verify_file(dest, sha, f"{src} changed while it was copied; import it again")
    except WeightsError:
        dest.unlink(missing_ok=True)
        raise


def _name_from(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-.") or "weights"
    return stem[:64]


# ---------------------------------------------------------------- listing and verification


@dataclass(frozen=True)
class Status:
    entry: Entry
    is_default: bool
    state: str  # "ok", "present" (not hashed), "missing", "not downloaded", "corrupt", "unpinned"
    path: Path | None
    detail: str = ""

    def record(self) -> dict:
        """The entry and its state as one JSON object (`s2ccrop weights list --json`)."""
        e = self.entry
        return {"name": e.name, "default": self.is_default, "state": self.state, "source": e.source,
                "path": str(self.path) if self.path else None, "sha256": e.sha256, "url": e.url,
                "config": e.config, "description": e.description}


def status(name: str | None = None, *, check: bool = True) -> list[Status]:
    """State of every registered entry (or one); `check` hashes present files."""
    reg = registry()
    names = [name] if name else reg.names()
    out = []
    for n in names:
        if n not in reg.entries:
            raise WeightsError(f"unknown weights {n!r} (known: {', '.join(reg.names()) or 'none'})")
        out.append(_status(reg.entries[n], n == reg.default, check))
    return out


def verify(names: list[str] | None = None) -> list[Status]:
    """Hash and check the files of `names`, or of every registered entry that has a file here."""
    if names:
        return [row for name in names for row in status(name)]
    return [row for row in status() if row.path is not None]


def _status(entry: Entry, is_default: bool, check: bool) -> Status:
    path = next((p for p in (entry.embedded_path, entry.cached_path) if p.is_file()), None)
    if entry.sha256 is None:
        return Status(entry, is_default, "unpinned", path, "no sha256 pinned in the manifest")
    if path is None:
        state = "not downloaded" if entry.url else "missing"
        return Status(entry, is_default, state, None)
    if not check:
        return Status(entry, is_default, "present", path)
    try:
        verify_file(path, entry.sha256, "")
    except WeightsError as exc:
        return Status(entry, is_default, "corrupt", path, str(exc).rstrip("; "))
    return Status(entry, is_default, "ok", path)
