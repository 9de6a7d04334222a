"""Weights registry, cache, sha256 verification, import, HTTP download, `s2ccrop weights`, packaging."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from s2ccrop import cli
from s2ccrop.batch import Env
from s2ccrop import weights as W
from s2ccrop.errors import WeightsError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv(W.ENV_CACHE, str(cache))
    monkeypatch.delenv(W.ENV_MANIFEST, raising=False)
    monkeypatch.delenv(W.ENV_OFFLINE, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return cache


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A reference-format GAICv1 pickle (with DataParallel prefix) and our safetensors, both real S2CNet."""
    import torch

    from s2ccrop.model import GAICV1, S2CNet, save_checkpoint

    folder = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(1)
    model = S2CNet(GAICV1)
    ref = folder / "GAICv1_reference.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, ref)
    ours = folder / "ours.safetensors"
    save_checkpoint(model, ours)
    return {"reference": ref, "ours": ours}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(folder: Path, entries: dict, default: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.json"
    path.write_text(json.dumps({"schema": 1, "default": default, "weights": entries}))
    return path


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), Env(io.BytesIO(), out, err, False))
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------ the shipped registry


def test_shipped_manifest_is_valid_and_its_files_match_their_pins():
    reg = W.load_manifest(ROOT / "weights" / "manifest.json")
    assert reg.default in reg.entries
    for entry in reg.entries.values():
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", entry.name)
        if entry.embedded_path.is_file():
            assert entry.sha256 is not None and sha(entry.embedded_path) == entry.sha256, entry.name
        if entry.url:
            assert entry.sha256 is not None


def test_shipped_default_is_installed_and_verifies():
    # the trained default ships inside the package: resolving it needs no network and no ../shared
    resolved = W.resolve(None)
    assert resolved.source == "embedded" and resolved.sha256 == W.registry().entries[W.default_name()].sha256
    assert resolved.path.stat().st_size <= 12 * 1024 * 1024


def test_missing_embedded_default_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated: Path):
    # an installation whose default file went missing (a broken install) must say what to do
    shipped = json.loads((W.embedded_dir() / W.MANIFEST_NAME).read_text())
    (tmp_path / W.MANIFEST_NAME).write_text(json.dumps(shipped))
    monkeypatch.setattr(W, "embedded_dir", lambda: tmp_path)
    with pytest.raises(WeightsError, match=r"not in this installation.*reinstall.*--weights NAME\|PATH"):
        W.resolve(None)


def test_cache_dir_from_env_else_platformdirs(monkeypatch: pytest.MonkeyPatch, isolated: Path):
    assert W.cache_dir() == isolated and W.weights_cache_dir() == isolated / "weights"
    monkeypatch.delenv(W.ENV_CACHE)
    from platformdirs import user_cache_dir

    assert W.cache_dir() == Path(user_cache_dir("s2ccrop", appauthor=False))


def test_pyproject_lists_every_subpackage():
    text = (ROOT / "pyproject.toml").read_text()
    listed = set(re.findall(r'"(s2ccrop(?:\.[\w]+)*)"', text.split("packages = [", 1)[1].split("]", 1)[0]))
    found = {
        ".".join(p.relative_to(ROOT).parent.parts)
        for p in (ROOT / "s2ccrop").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert "s2ccrop._weights" in listed


# ------------------------------------------------------------------ registry entries with files


def test_extra_manifest_entry_is_verified_on_every_load(tmp_path: Path, monkeypatch, checkpoints):
    folder = tmp_path / "mirror"
    folder.mkdir()
    shutil.copy(checkpoints["ours"], folder / "m.safetensors")
    pinned = sha(folder / "m.safetensors")
    manifest = write_manifest(folder, {"m": {"file": "m.safetensors", "sha256": pinned}}, default="m")
    monkeypatch.setenv(W.ENV_MANIFEST, str(manifest))
    got = W.resolve(None)
    assert (got.name, got.path, got.sha256, got.source) == ("m", folder / "m.safetensors", pinned, "embedded")
    assert os.fspath(got) == str(folder / "m.safetensors") and got.info()["sha256"] == pinned
    with open(folder / "m.safetensors", "r+b") as fh:  # flip one byte
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 1]))
    with pytest.raises(WeightsError, match="does not match the pinned.*reinstall"):
        W.resolve("m")


def test_unpinned_or_unknown_entries_are_refused(tmp_path: Path, monkeypatch):
    folder = tmp_path / "m"
    (folder).mkdir()
    (folder / "u.safetensors").write_bytes(b"x")
    monkeypatch.setenv(W.ENV_MANIFEST, str(write_manifest(folder, {"u": {"file": "u.safetensors", "sha256": None}})))
    with pytest.raises(WeightsError, match="no sha256 pinned"):
        W.resolve("u")
    with pytest.raises(WeightsError, match="unknown weights 'nope'.*known:.*u"):
        W.resolve("nope")
    with pytest.raises(WeightsError, match="no such weights file"):
        W.resolve("missing/file.safetensors")


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"file": "../x.pth", "sha256": None}, "plain file name"),
        ({"file": "x.pth", "sha256": "ABC"}, "64 lowercase hex"),
        ({"file": "x.pth", "sha256": None, "url": "http://h/x.pth"}, "needs a pinned"),
        ({"file": "x.pth", "sha256": "0" * 64, "url": "ftp://h/x.pth"}, "http"),
    ],
)
def test_manifest_validation(tmp_path: Path, entry: dict, message: str):
    with pytest.raises(WeightsError, match=message):
        W.load_manifest(write_manifest(tmp_path, {"x": entry}))


# ------------------------------------------------------------------ import


def test_import_reference_checkpoint_and_verify_on_load(checkpoints, isolated: Path):
    got = W.import_weights(checkpoints["reference"], "gaic1")
    assert got.path == isolated / "weights" / "gaic1.pth" and got.sha256 == sha(checkpoints["reference"])
    record = json.loads((isolated / "weights" / "gaic1.json").read_text())
    assert record["config"] == "GAICv1" and record["sha256"] == got.sha256
    assert W.resolve("gaic1").path == got.path
    with pytest.raises(WeightsError, match="already exist.*--force"):
        W.import_weights(checkpoints["reference"], "gaic1")
    got.path.write_bytes(got.path.read_bytes()[:1000])  # truncate the cached copy
    with pytest.raises(WeightsError, match=r"corrupt, truncated.*weights import FILE --name gaic1 --force"):
        W.resolve("gaic1")
    assert W.import_weights(checkpoints["reference"], "gaic1", force=True).sha256 == sha(checkpoints["reference"])
    assert W.resolve("gaic1").source == "imported"


def test_import_our_safetensors_default_name_from_stem(checkpoints):
    got = W.import_weights(checkpoints["ours"])
    assert got.name == "ours" and got.path.suffix == ".safetensors"


class Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_refused_and_never_runs(tmp_path: Path, isolated: Path):
    import torch

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"node_emb.0.weight": torch.zeros(2, 2), "x": Payload(str(marker))}, evil)
    with pytest.raises(WeightsError, match="refused to load"):
        W.import_weights(evil, "evil")
    assert not marker.exists()
    assert not (isolated / "weights" / "evil.json").exists()


def test_import_rejects_files_that_are_not_s2cnet(tmp_path: Path):
    import torch

    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="not an S2CNet"):
        W.import_weights(tmp_path / "other.pth", "other")
    with pytest.raises(WeightsError, match="invalid weights name"):
        W.import_weights(tmp_path / "other.pth", "../evil")


# ------------------------------------------------------------------ download over HTTP


@pytest.fixture
def server(tmp_path: Path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/www, stopped after the test."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def published(server, tmp_path: Path, monkeypatch, checkpoints):
    www, base = server
    shutil.copy(checkpoints["ours"], www / "net.safetensors")
    pinned = sha(www / "net.safetensors")
    entries = {
        "net": {"file": "net-v1.safetensors", "sha256": pinned, "url": f"{base}/net.safetensors", "config": "GAICv1"},
        "badsum": {"file": "bad.safetensors", "sha256": "0" * 64, "url": f"{base}/net.safetensors"},
        "gone": {"file": "gone.safetensors", "sha256": "1" * 64, "url": f"{base}/missing.safetensors"},
    }
    monkeypatch.setenv(W.ENV_MANIFEST, str(write_manifest(tmp_path / "registry", entries)))
    return pinned


def test_download_verifies_and_renames_into_the_cache(published: str, isolated: Path):
    seen = []
    path = W.download("net", progress=lambda done, total: seen.append((done, total)))
    assert path == isolated / "weights" / "net-v1.safetensors" and sha(path) == published
    assert seen and seen[-1][0] == path.stat().st_size == seen[-1][1]
    assert os.listdir(path.parent) == ["net-v1.safetensors"]  # no temporary left behind
    assert W.resolve("net").source == "cache"


def test_download_with_wrong_sha_keeps_nothing(published, isolated: Path):
    with pytest.raises(WeightsError, match="failed verification.*nothing was kept"):
        W.download("badsum")
    assert not (isolated / "weights").exists() or os.listdir(isolated / "weights") == []


def test_download_errors_and_offline(published, isolated: Path, monkeypatch):
    with pytest.raises(WeightsError, match="cannot download.*404"):
        W.download("gone")
    monkeypatch.setenv(W.ENV_OFFLINE, "1")
    with pytest.raises(WeightsError, match=r"S2CCROP_OFFLINE=1 forbids.*weights import FILE --name net"):
        W.resolve("net")
    monkeypatch.delenv(W.ENV_OFFLINE)
    assert W.resolve("net").path.is_file()  # first use downloads


def test_corrupt_download_is_refused_then_repaired(published, isolated: Path):
    path = W.download("net")
    path.write_bytes(b"garbage")
    with pytest.raises(WeightsError, match=r"weights download net --force"):
        W.resolve("net")
    assert sha(W.download("net")) == published  # a corrupt copy is fetched again


def test_offline_import_of_a_registered_file(published, checkpoints, isolated, monkeypatch):
    monkeypatch.setenv(W.ENV_OFFLINE, "1")
    got = W.import_weights(checkpoints["ours"], "net")
    assert got.path == isolated / "weights" / "net-v1.safetensors" and W.resolve("net").sha256 == published
    with pytest.raises(WeightsError, match="not the file registered"):
        W.import_weights(checkpoints["reference"], "net")


# ------------------------------------------------------------------ the `s2ccrop weights` commands


def test_weights_commands_end_to_end(published, checkpoints, isolated: Path):
    code, out, err = run_cli("weights", "download", "net")
    assert code == 0 and out.strip() == str(isolated / "weights" / "net-v1.safetensors")
    code, out, _ = run_cli("weights", "import", str(checkpoints["reference"]), "--name", "ref1")
    name, digest, path = out.strip().split("\t")
    assert code == 0 and (name, digest) == ("ref1", sha(checkpoints["reference"])) and Path(path).is_file()
    code, out, _ = run_cli("weights", "list", "--json")
    rows = {r["name"]: r for r in map(json.loads, out.splitlines())}
    assert code == 0 and rows["net"]["state"] == "ok" and rows["ref1"]["source"] == "imported"
    assert rows["gone"]["state"] == "not downloaded"
    assert rows["s2ccrop-v5"]["default"] is True
    code, out, _ = run_cli("weights", "list")
    assert code == 0 and re.search(r"^\* s2ccrop-v5 ", out, re.M) and re.search(r"^  net\s+ok\s+GAICv1", out, re.M)
    assert run_cli("weights", "path") == (0, f"{isolated / 'weights'}\n", "")
    assert run_cli("weights", "path", "ref1")[1].strip() == path
    code, out, _ = run_cli("weights", "verify")
    assert code == 0 and sorted(l.split()[1] for l in out.splitlines()) == ["net", "ref1", "s2ccrop-v5"]
    Path(path).write_bytes(b"tampered")
    code, out, err = run_cli("weights", "verify", "ref1")
    assert code == 2 and err.startswith("s2ccrop: error: ref1: ") and "does not match" in err
    code, _, err = run_cli("weights", "path", "gone")
    assert code == 2 and "s2ccrop weights download gone" in err


def test_crop_with_imported_reference_weights(checkpoints, tmp_path: Path):
    from PIL import Image

    Image.new("RGB", (48, 32), (90, 120, 200)).save(tmp_path / "p.png")
    assert run_cli("weights", "import", str(checkpoints["reference"]), "--name", "ref")[0] == 0
    code, out, err = run_cli(str(tmp_path / "p.png"), "--weights", "ref", "-r", "1:1", "--json", "--dry-run")
    assert code == 0, err
    rec = json.loads(out)
    assert rec["ratio"] == "1:1" and rec["output"] is None and "warning" not in err
    code, _, err = run_cli(str(tmp_path / "p.png"), "--weights", "nope", "-r", "1:1")
    assert code == 2 and err.startswith("s2ccrop: error: unknown weights 'nope'")


# ------------------------------------------------------------------ packaging


def _copy_project(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.pyd", "*.safetensors.tmp*")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, dest / name)
    (dest / "README.md").touch()
    shutil.copytree(ROOT / "s2ccrop", dest / "s2ccrop", ignore=ignore)
    shutil.copytree(ROOT / "weights", dest / "weights", ignore=ignore)
    return dest


def _embedded_dir_seen_by(python_path_setup: str) -> Path:
    code = f"{python_path_setup}\nfrom s2ccrop import weights\nprint(weights.embedded_dir())"
    # -S: without the environment's site-packages, where the developer's own editable s2ccrop would win
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip())


@pytest.mark.slow
def test_wheel_and_editable_installs_ship_the_weights_folder(tmp_path: Path):
    (tmp_path / "src").mkdir()
    src = _copy_project(tmp_path / "src")
    # FORCE_CUDA (set by CI for the real install) would contradict S2CCROP_BUILD_EXT=0 here
    env = {k: v for k, v in os.environ.items() if k != "FORCE_CUDA"}
    env.update({"S2CCROP_BUILD_EXT": "0", "PIP_NO_INDEX": "1"})
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-build-isolation", "--no-deps", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, env=env, timeout=300, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "s2ccrop/_weights/manifest.json" in names
    assert "s2ccrop/io/images.py" in names and "s2ccrop/cli/commands.py" in names
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(wheel).extractall(unpacked)
    seen = _embedded_dir_seen_by(f"import sys; sys.path.insert(0, {str(unpacked)!r})")
    assert seen == unpacked / "s2ccrop" / "_weights"
    assert json.loads((seen / "manifest.json").read_text())["schema"] == 1

    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip uninstalls the developer's own s2ccrop before installing into --prefix
    subprocess.run([*pip, "install", "-e", str(src), "--no-build-isolation", "--no-deps", "--ignore-installed",
                    "--prefix", str(prefix)],
                   check=True, env=env, timeout=300, capture_output=True)
    (site,) = prefix.glob("lib/python*/site-packages")
    seen = _embedded_dir_seen_by(f"import site; site.addsitedir({str(site)!r})")
    assert seen == src / "weights"
