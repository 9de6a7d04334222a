"""Builds the optional compiled align ops, ``s2ccrop._C``. Project metadata lives in pyproject.toml.

Install with ``pip install --no-build-isolation -e '.[test]'`` so the extension is built against the
torch that is installed (build isolation could pull another one). Environment switches:

- ``S2CCROP_BUILD_EXT``: unset = try to build, and if the compile fails say why and install without it
  (s2ccrop then runs its pure-PyTorch ops); ``1`` = the extension is required, a failure is an error;
  ``0`` = do not build it at all (pure-Python install).
- ``FORCE_CUDA=1``: build the CUDA kernels even without a visible GPU (a CI or build machine); needs a
  CUDA toolkit (``CUDA_HOME``) whose major version matches torch's. Implies the extension is required.
- ``TORCH_CUDA_ARCH_LIST``: GPU architectures; without a visible GPU the default is ``8.0;9.0+PTX``.
- ``MAX_JOBS``: parallel compile jobs.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
MIN_TORCH = (2, 4)  # torch.library.register_autograd / register_fake, used by s2ccrop/ops/_extension.py
DEFAULT_ARCH_LIST = "8.0;9.0+PTX"  # sm_80 SASS also runs on 8.6 / 8.9; PTX lets newer GPUs JIT sm_90 code


class BuildPlan:
    """What to build and why; printed as one block before anything compiles."""

    def __init__(self) -> None:
        self.build = False
        self.cuda = False
        self.required = False
        self.lines: list[tuple[str, str]] = []
        self.decision = ""

    def note(self, key: str, value: str) -> None:
        self.lines.append((key, value))

    def report(self) -> None:
        width = 70
        print("=" * width, file=sys.stderr)
        print("s2ccrop build configuration", file=sys.stderr)
        for key, value in self.lines:
            print(f"  {key:<17}{value}", file=sys.stderr)
        print(f"  {'decision':<17}{self.decision}", file=sys.stderr)
        print("=" * width, file=sys.stderr)


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "auto"):
        return None
    return value not in ("0", "false", "no", "off")


def _int_version(text: str | None) -> tuple[int, ...] | None:
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return tuple(int(part) for part in match.groups() if part is not None) if match else None


def _nvcc_version(cuda_home: str) -> tuple[int, ...] | None:
    nvcc = os.path.join(cuda_home, "bin", "nvcc")
    try:
        output = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+\.\d+)", output)
    return _int_version(match.group(1)) if match else None


def _fail(plan: BuildPlan, why: str) -> BuildPlan:
    plan.decision = f"ERROR: {why}"
    plan.report()
    raise SystemExit(f"s2ccrop: {why}")


def make_plan() -> BuildPlan:
    plan = BuildPlan()
    want_ext = _env_flag("S2CCROP_BUILD_EXT")
    force_cuda = bool(_env_flag("FORCE_CUDA"))
    plan.required = bool(want_ext) or force_cuda
    if want_ext is False:
        if force_cuda:
            return _fail(plan, "S2CCROP_BUILD_EXT=0 contradicts FORCE_CUDA=1")
        plan.decision = "no extension (S2CCROP_BUILD_EXT=0): pure-PyTorch ops"
        return plan

    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME
    except ImportError as exc:
        if plan.required:
            return _fail(plan, f"torch is needed to build the extension ({exc}); install torch, then use --no-build-isolation")
        plan.decision = f"no extension: torch is not importable ({exc}); pure-PyTorch ops"
        return plan

    torch_version = _int_version(torch.__version__)
    plan.note("torch", f"{torch.__version__} (CUDA {torch.version.cuda or 'none: CPU-only build'})")
    if torch_version is None or torch_version[:2] < MIN_TORCH:
        why = f"torch {torch.__version__} is older than {'.'.join(map(str, MIN_TORCH))}, which the compiled ops need"
        if plan.required:
            return _fail(plan, why)
        plan.decision = f"no extension: {why}; pure-PyTorch ops"
        return plan

    plan.build = True
    gpu_visible = torch.cuda.is_available()
    plan.note("GPU visible", "yes" if gpu_visible else "no")
    plan.note("FORCE_CUDA", "1" if force_cuda else "unset")
    nvcc = _nvcc_version(CUDA_HOME) if CUDA_HOME else None
    plan.note("CUDA toolkit", f"{CUDA_HOME} (nvcc {'.'.join(map(str, nvcc)) if nvcc else 'not found'})" if CUDA_HOME else "not found (set CUDA_HOME)")

    if gpu_visible or force_cuda:
        torch_cuda = _int_version(torch.version.cuda)
        problem = None
        if torch_cuda is None:
            problem = "torch is a CPU-only build"
        elif not CUDA_HOME or nvcc is None:
            problem = "no CUDA toolkit found (set CUDA_HOME to the toolkit containing bin/nvcc)"
        elif nvcc[0] != torch_cuda[0]:
            problem = f"nvcc {nvcc[0]}.x does not match torch's CUDA {torch.version.cuda}"
        if problem and force_cuda:
            return _fail(plan, f"FORCE_CUDA=1 but {problem}")
        if problem:
            plan.note("CUDA kernels", f"skipped: {problem}")
        else:
            plan.cuda = True

    if plan.cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not gpu_visible:
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST
            plan.note("arch list", f"{DEFAULT_ARCH_LIST} (default: no GPU visible)")
        elif os.environ.get("TORCH_CUDA_ARCH_LIST"):
            plan.note("arch list", f"{os.environ['TORCH_CUDA_ARCH_LIST']} (TORCH_CUDA_ARCH_LIST)")
        else:
            caps = sorted({torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())})
            plan.note("arch list", ";".join(f"{major}.{minor}" for major, minor in caps) + " (the visible GPUs)")
        why = "FORCE_CUDA=1" if force_cuda else "a GPU is visible"
        plan.decision = f"build s2ccrop._C with CPU + CUDA kernels ({why})"
    else:
        plan.decision = "build s2ccrop._C with CPU kernels only (no usable CUDA)"
    plan.note("MAX_JOBS", os.environ.get("MAX_JOBS", "unset (all cores)"))
    plan.note("on failure", "error (extension required)" if plan.required else "install anyway, pure-PyTorch ops")
    return plan


def make_extension(plan: BuildPlan):
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    import torch

    sources = ["csrc/s2ccrop.cpp", *sorted(glob.glob("csrc/cpu/*.cpp", root_dir=ROOT))]
    cxx_flags = ["-O3"] if sys.platform == "win32" else ["-O3", "-ffp-contract=off"]  # see csrc/align_common.h
    macros = [("S2CCROP_WITH_CUDA", "1" if plan.cuda else "0")]
    base_version = re.match(r"\d+\.\d+\.\d+", torch.__version__)
    if base_version:
        macros.append(("S2CCROP_TORCH_VERSION", base_version.group(0)))
    if plan.cuda:
        return CUDAExtension(
            "s2ccrop._C",
            sources + sorted(glob.glob("csrc/cuda/*.cu", root_dir=ROOT)),
            define_macros=macros,
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3"]},
        )
    return CppExtension("s2ccrop._C", sources, define_macros=macros, extra_compile_args={"cxx": cxx_flags})


def make_build_ext(plan: BuildPlan):
    from torch.utils.cpp_extension import BuildExtension

    class OptionalBuildExtension(BuildExtension):
        """A failed compile is an error only when the extension was required."""

        def build_extensions(self) -> None:
            try:
                super().build_extensions()
            except Exception as exc:  # any compiler / linker / toolchain failure: reported loudly below
                if plan.required:
                    raise
                bar = "!" * 70
                print(
                    f"\n{bar}\ns2ccrop: building the compiled ops FAILED, installing WITHOUT them.\n"
                    f"  reason: {type(exc).__name__}: {exc}\n"
                    "  s2ccrop will use its pure-PyTorch ops (same results, slower).\n"
                    "  Set S2CCROP_BUILD_EXT=1 to make this an error, or S2CCROP_BUILD_EXT=0 to skip the build.\n"
                    f"{bar}\n",
                    file=sys.stderr,
                )
                self.extensions = []
                remove_stale_inplace_build()

    return OptionalBuildExtension.with_options(use_ninja=True)


def remove_stale_inplace_build() -> None:
    """An earlier editable install left s2ccrop/_C*.so in the tree; it would load instead of the fallback."""
    for path in glob.glob(os.path.join(ROOT, "s2ccrop", "_C.*")):
        if path.endswith((".so", ".pyd")):
            print(f"s2ccrop: removing the stale compiled ops {os.path.relpath(path, ROOT)}", file=sys.stderr)
            os.remove(path)


def main() -> None:
    os.chdir(ROOT)
    plan = make_plan()
    plan.report()
    if not plan.build:
        remove_stale_inplace_build()
        setup()
        return
    setup(ext_modules=[make_extension(plan)], cmdclass={"build_ext": make_build_ext(plan)})


main()
