"""vai_q_tensorflow2 3.5 on a plain host: built from source into a cached virtualenv of its own.

The Vitis AI quantizer is a fork of tensorflow-model-optimization tied to TensorFlow 2.12,
so it cannot live in the project's venv (TF 2.21 and the stock TFMOT). `make vai-q`
(`python -m vitis.vai_q_env build`) builds it once per source:

  source  VITIS_AI_SRC: a Vitis-AI checkout, its src/vai_quantizer/vai_q_tensorflow2.x, or a
          tarball of that subtree; default ../shared/vendor/vitis-ai-3.5/vai_q_tensorflow2-src.tar.gz
  cache   $FLM_VAI_Q_CACHE (or $FLM_CACHE, default ~/.cache/flm)/vai_q-KEY, KEY = hash of the source and of
          this recipe: a fresh clone (CI) and a second call reuse it; ready.json is written
          last, so a directory without it is an interrupted build and is built again
  steps   virtualenv (Python 3.8-3.11: TF 2.12 has wheels for those only) with the pinned
          TF 2.12 stack + click/OpenCV for flm; cmake + make -jN of the custom ops
          (fix_neuron_op.so, swig's _vai_wrapper.so) -- `-march=native` dropped so the
          cached build runs on any x86-64; the wheel (setup.py bdist_wheel --release);
          pip install; an import check.

`flm vitis quantize` outside the docker re-runs itself in that venv (`run_flm`): the same
click command and drivers, with this checkout's packages on PYTHONPATH.
"""
import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from runtime.json_files import read_json

#: Bump when the build steps or pins change: every cached build then gets a new key.
RECIPE = 1
#: TensorFlow 2.12 publishes wheels for these Python versions only.
PYTHONS = ((3, 8), (3, 9), (3, 10), (3, 11))
#: The quantizer's stack (its requirements.txt without enum34, which shadows the stdlib enum,
#: plus progressbar2/tabulate that its imports need) and flm's base dependencies.
PINS = ("tensorflow-cpu==2.12.0", "keras==2.12.0", "numpy>=1.22,<1.24", "protobuf>=3.20.3,<3.21",
        "scipy", "six", "mock", "dm-tree~=0.1.1", "progressbar2", "tabulate",
        "click>=8.1,<9", "opencv-python-headless>=4.8,<4.11", "tqdm", "setuptools<70", "wheel")
#: Build tools and the Debian/Ubuntu package that provides each.
TOOLS = (("cmake", "cmake"), ("make", "make"), ("g++", "g++"), ("swig", "swig"))
#: The subtree of a Vitis-AI checkout that holds the quantizer.
SUBTREE = "src/vai_quantizer/vai_q_tensorflow2.x"
#: Inside the subtree: the custom ops' CMake project.
OPS_DIR = "tensorflow_model_optimization/python/core/quantization/keras/vitis/vai_q_tensorflow"
VENDORED = os.path.join("vendor", "vitis-ai-3.5", "vai_q_tensorflow2-src.tar.gz")
#: Set in the worker's environment: it must use the fork it runs on, never re-launch itself.
WORKER_ENV = "FLM_VAI_Q_WORKER"
#: flm's packages, put on the worker's PYTHONPATH.
PACKAGES = ("keras_flm", "quant", "runtime", "vitis")
READY = "ready.json"
SKIP_DIRS = {"build", "gen_files", "pkgs", "__pycache__", ".git", "dist"}


class VaiQError(Exception):
    """The quantizer cannot be built or found; the message says what to do."""


def repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def vendored_source() -> str:
    return os.path.join(os.path.dirname(repo_root()), "shared", VENDORED)


def cache_root() -> str:
    """$FLM_VAI_Q_CACHE, else $FLM_CACHE (shared with scripts/build_xir.sh), else ~/.cache/flm."""
    root = os.environ.get("FLM_VAI_Q_CACHE") or os.environ.get("FLM_CACHE")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "flm")
    return os.path.abspath(root)


# ------------------------------------------------------------------------------ the source

def _tar_prefix(path: str) -> str:
    """The member prefix under which a tarball holds the quantizer's setup.py."""
    marker = OPS_DIR + "/CMakeLists.txt"
    with tarfile.open(path) as tar:
        for name in tar.getnames():
            name = name[2:] if name.startswith("./") else name
            if name.endswith(marker):
                return name[:-len(marker)]
    raise VaiQError("%s holds no vai_q_tensorflow2 source (no %s in it)" % (path, marker))


def resolve_source(src: Optional[str] = None) -> Tuple[str, str]:
    """(kind, path) of the quantizer source: ("tar", tarball) or ("dir", the vai_q_tensorflow2.x dir).

    `src` (or $VITIS_AI_SRC) may be a Vitis-AI checkout, its vai_q_tensorflow2.x directory or
    a tarball of that subtree; without either, the vendored tarball."""
    given = src or os.environ.get("VITIS_AI_SRC")
    path = os.path.abspath(os.path.expanduser(given)) if given else vendored_source()
    origin = "VITIS_AI_SRC=%s" % given if given else "the vendored source"
    if not os.path.exists(path):
        raise VaiQError("vai_q_tensorflow2 source not found: %s (%s). Point VITIS_AI_SRC at a Vitis-AI "
                        "checkout (git clone -b v3.5 https://github.com/Xilinx/Vitis-AI) or at its %s"
                        % (path, origin, SUBTREE))
    if os.path.isfile(path):
        _tar_prefix(path)
        return "tar", path
    for cand in (os.path.join(path, SUBTREE), path):
        if os.path.isfile(os.path.join(cand, "setup.py")) and os.path.isdir(os.path.join(cand, OPS_DIR)):
            return "dir", cand
    raise VaiQError("%s (%s) is neither a Vitis-AI checkout (no %s) nor a vai_q_tensorflow2.x directory"
                    % (path, origin, SUBTREE))


def _walk(root: str) -> Iterator[str]:
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and not x.endswith(".egg-info"))
        for f in sorted(files):
            yield os.path.join(d, f)


def source_digest(kind: str, path: str) -> str:
    """sha256 of the source: the tarball's bytes, or every file (name and content) of a directory."""
    h = hashlib.sha256()
    files = [path] if kind == "tar" else list(_walk(path))
    for f in files:
        if kind == "dir":
            h.update(os.path.relpath(f, path).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def cache_key(digest: str, python_version: Sequence[int]) -> str:
    recipe = json.dumps({"recipe": RECIPE, "pins": PINS, "python": list(python_version)[:2]}, sort_keys=True)
    key = hashlib.sha256((digest + recipe).encode()).hexdigest()[:12]
    return "vai_q-%s-py%d%d" % (key, python_version[0], python_version[1])


# ------------------------------------------------------------------------------ finding a build

class VaiQEnv(object):
    """A built quantizer venv."""

    def __init__(self, root: str, info: Dict[str, object]):
        self.root = root
        self.info = info

    @property
    def python(self) -> str:
        return os.path.join(self.root, "venv", "bin", "python")

    def __repr__(self) -> str:
        return "VaiQEnv(%r)" % self.root


def _python_version(python: str) -> Tuple[int, int]:
    out = subprocess.run([python, "-c", "import sys; print('%d %d' % sys.version_info[:2])"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise VaiQError("cannot run %s: %s" % (python, out.stderr.strip()))
    major, minor = out.stdout.split()
    return int(major), int(minor)


def pick_python(explicit: Optional[str] = None) -> Tuple[str, Tuple[int, int]]:
    """The interpreter for the venv: VAI_Q_PYTHON, else python3.11 .. 3.8 on PATH, else this one."""
    given = explicit or os.environ.get("VAI_Q_PYTHON")
    if given:
        exe = shutil.which(given) or given
        if not os.path.exists(exe):
            raise VaiQError("VAI_Q_PYTHON=%s not found" % given)
        ver = _python_version(exe)
        if ver not in PYTHONS:
            raise VaiQError("%s is Python %d.%d; vai_q_tensorflow2 3.5 needs TensorFlow 2.12, which has "
                            "wheels for Python 3.8-3.11 only: set VAI_Q_PYTHON to one of those "
                            "(apt-get install python3.11 python3.11-venv python3.11-dev)" % ((exe,) + ver))
        return exe, ver
    for major, minor in reversed(PYTHONS):
        exe = shutil.which("python%d.%d" % (major, minor))
        if exe:
            return exe, (major, minor)
    ver = tuple(sys.version_info[:2])
    if ver in PYTHONS:
        return sys.executable, (ver[0], ver[1])
    raise VaiQError("no Python 3.8-3.11 found (this one is %d.%d): TensorFlow 2.12, which vai_q_tensorflow2 "
                    "3.5 needs, has wheels for those only. Install one (apt-get install python3.11 "
                    "python3.11-venv python3.11-dev) or set VAI_Q_PYTHON" % ver)


def env_dir(src: Optional[str] = None, python: Optional[str] = None) -> Tuple[str, Tuple[str, str], str]:
    """(cache directory for this source and Python, (kind, source path), interpreter)."""
    kind, path = resolve_source(src)
    exe, ver = pick_python(python)
    return os.path.join(cache_root(), cache_key(source_digest(kind, path), ver)), (kind, path), exe


def find(src: Optional[str] = None) -> Optional[VaiQEnv]:
    """The built venv for the configured source, or None (not built, or no source/Python)."""
    try:
        root, _, _ = env_dir(src)
    except VaiQError:
        return None
    return _load(root)


def _load(root: str) -> Optional[VaiQEnv]:
    """The build in `root`, or None when it is unfinished: no ready record, no venv, or a ready record
    that is not JSON (a build killed while writing it), which `build` then redoes instead of failing on."""
    ready = os.path.join(root, READY)
    if not os.path.isfile(ready) or not os.path.exists(os.path.join(root, "venv", "bin", "python")):
        return None
    try:
        info = read_json(ready)
    except ValueError as e:
        print("vai_q_tensorflow2: %s; treating the build as unfinished" % e, file=sys.stderr)
        return None
    return VaiQEnv(root, info)


def why_missing(src: Optional[str] = None) -> str:
    """One line: why find() gives None and what to run."""
    try:
        root, (kind, path), _ = env_dir(src)
    except VaiQError as e:
        return str(e)
    return ("vai_q_tensorflow2 is not built for this source (%s): run `make vai-q` (about 5 min; it goes "
            "to %s)" % (path, root))


# ------------------------------------------------------------------------------ building

def check_tools() -> None:
    missing = [(tool, pkg) for tool, pkg in TOOLS if shutil.which(tool) is None]
    if missing:
        raise VaiQError("building vai_q_tensorflow2 needs %s: apt-get install %s"
                        % (", ".join(t for t, _ in missing), " ".join(p for _, p in missing)))


def _check_headers(python: str) -> None:
    code = ("import os, sysconfig; "
            "print(os.path.isfile(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if out.stdout.strip() != "True":
        ver = "%d.%d" % _python_version(python)
        raise VaiQError("%s has no Python.h (the custom ops' swig wrapper needs it): apt-get install "
                        "python%s-dev" % (python, ver))


@contextlib.contextmanager
def _lock(path: str) -> Iterator[None]:
    import fcntl

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _clean_env(venv: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "")
    env["PYTHONNOUSERSITE"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def _run(cmd: List[str], log, env: Dict[str, str], cwd: Optional[str] = None) -> None:
    log.write("\n$ %s\n" % " ".join(cmd))
    log.flush()
    rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    if rc != 0:
        raise VaiQError("`%s` failed (exit %d)" % (" ".join(cmd[:4]), rc))


def _extract(kind: str, path: str, dest: str) -> str:
    """A private copy of the source in dest; returns the vai_q_tensorflow2.x directory in it."""
    if kind == "dir":
        out = os.path.join(dest, "vai_q_tensorflow2.x")
        shutil.copytree(path, out, ignore=shutil.ignore_patterns(*SKIP_DIRS))
        return out
    prefix = _tar_prefix(path)
    with tarfile.open(path) as tar:
        members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
        for m in members:
            if os.path.isabs(m.name) or ".." in m.name.split("/"):
                raise VaiQError("%s: unsafe member %s" % (path, m.name))
        tar.extractall(dest, members=members)
    return os.path.join(dest, prefix) if prefix else dest


def _portable(ops_dir: str) -> None:
    """Drop -march=native: the build is cached and may run on another x86-64 CPU."""
    cm = os.path.join(ops_dir, "CMakeLists.txt")
    with open(cm) as f:
        text = f.read()
    with open(cm, "w") as f:
        f.write(text.replace("-march=native", ""))


IMPORT_CHECK = ("import tensorflow as tf; "
                "from tensorflow_model_optimization.quantization.keras import vitis_quantize; "
                "from tensorflow_model_optimization.python.core.quantization.keras.vitis "
                "import vai_q_tensorflow; "
                "print(tf.__version__)")


def build(src: Optional[str] = None, python: Optional[str] = None, jobs: Optional[int] = None,
          force: bool = False, echo=None) -> VaiQEnv:
    """Build (or find) the quantizer venv for `src`; returns it. Raises VaiQError with the fix."""
    echo = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
    root, (kind, path), exe = env_dir(src, python)
    jobs = int(jobs or os.environ.get("VAI_Q_JOBS") or min(2, os.cpu_count() or 1))
    with _lock(root + ".lock"):
        found = _load(root)
        if found is not None and not force:
            echo("vai_q_tensorflow2: cached build %s" % root)
            return found
        check_tools()
        _check_headers(exe)
        if os.path.exists(root):
            shutil.rmtree(root)
        os.makedirs(root)
        started = time.time()
        log_path = os.path.join(root, "build.log")
        venv = os.path.join(root, "venv")
        vpy = os.path.join(venv, "bin", "python")
        echo("vai_q_tensorflow2: building from %s into %s (log: %s)" % (path, root, log_path))
        try:
            with open(log_path, "w") as log, tempfile.TemporaryDirectory(prefix="vai_q-src-") as tmp:
                env = _clean_env(venv)
                echo("  virtualenv (%s) + TensorFlow 2.12 ..." % exe)
                _run([exe, "-m", "venv", venv], log, env)
                _run([vpy, "-m", "pip", "install", "-q", "--upgrade", "pip"], log, env)
                _run([vpy, "-m", "pip", "install", "-q"] + list(PINS), log, env)
                top = _extract(kind, path, tmp)
                ops = os.path.join(top, OPS_DIR)
                _portable(ops)
                echo("  custom ops: cmake + make -j%d ..." % jobs)
                bdir = os.path.join(ops, "build")
                os.makedirs(bdir, exist_ok=True)
                _run(["cmake", "-DDEBUG=OFF", "-DABI1=OFF", "-DGPU=OFF", "-DCMAKE_INSTALL_PREFIX=" + venv,
                      "-DPython3_EXECUTABLE=" + vpy, "-DPYTHON_EXECUTABLE=" + vpy, ".."], log, env, cwd=bdir)
                _run(["make", "-j%d" % jobs], log, env, cwd=bdir)
                gen = os.path.join(ops, "gen_files")
                os.makedirs(gen, exist_ok=True)
                for f in ("fix_neuron_op/fix_neuron_op.so", "vai_wrapper.py", "_vai_wrapper.so"):
                    shutil.copy(os.path.join(bdir, f), gen)
                shutil.copy(os.path.join(ops, "python", "__init__.py"), gen)
                echo("  wheel + install ...")
                pkgs = os.path.join(root, "pkgs")
                _run([vpy, "setup.py", "bdist_wheel", "--release", "--dist-dir", pkgs], log, env, cwd=top)
                wheels = sorted(f for f in os.listdir(pkgs) if f.endswith(".whl"))
                _run([vpy, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
                      os.path.join(pkgs, wheels[-1])], log, env)
                out = subprocess.run([vpy, "-c", IMPORT_CHECK], capture_output=True, text=True, env=env,
                                     cwd=tmp)
                log.write(out.stdout + out.stderr)
                if out.returncode != 0:
                    raise VaiQError("the built quantizer does not import: %s" % out.stderr.strip()[-800:])
                info = {"source": path, "source_kind": kind, "key": os.path.basename(root), "recipe": RECIPE,
                        "python": "%d.%d" % _python_version(vpy),
                        "tensorflow": out.stdout.strip().splitlines()[-1],
                        "wheel": wheels[-1], "build_seconds": round(time.time() - started, 1),
                        "built": time.strftime("%Y-%m-%dT%H:%M:%S")}
        except BaseException as e:
            tail = _tail(log_path)
            shutil.rmtree(venv, ignore_errors=True)
            if isinstance(e, VaiQError):
                raise VaiQError("%s\n--- last lines of %s ---\n%s" % (e, log_path, tail)) from None
            raise
        with open(os.path.join(root, READY), "w") as f:
            json.dump(info, f, indent=2, sort_keys=True)
        echo("vai_q_tensorflow2 built in %.0f s: %s" % (info["build_seconds"], root))
        return VaiQEnv(root, info)


def _tail(path: str, n: int = 30) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# ------------------------------------------------------------------------------ running flm in it

@contextlib.contextmanager
def flm_path() -> Iterator[str]:
    """A directory holding links to this checkout's packages (and nothing else of its site)."""
    with tempfile.TemporaryDirectory(prefix="flm-vai_q-") as d:
        for pkg in PACKAGES:
            os.symlink(os.path.join(repo_root(), pkg), os.path.join(d, pkg))
        yield d


def worker_env(env: VaiQEnv, path: str) -> Dict[str, str]:
    out = _clean_env(os.path.join(env.root, "venv"))
    out["PYTHONPATH"] = path
    out[WORKER_ENV] = "1"
    out.setdefault("TF_USE_LEGACY_KERAS", "1")
    return out


def run_python(env: VaiQEnv, args: List[str], cwd: Optional[str] = None) -> int:
    """`python ARGS` in the quantizer venv with flm importable; returns the exit status."""
    with flm_path() as path:
        return subprocess.call([env.python] + list(args), env=worker_env(env, path), cwd=cwd)


def run_flm(env: VaiQEnv, vitis_args: List[str]) -> int:
    """`flm vitis VITIS_ARGS` in the quantizer venv; returns its exit status."""
    return run_python(env, ["-m", "vitis.vai_q_worker"] + list(vitis_args))


def in_worker() -> bool:
    return os.environ.get(WORKER_ENV) == "1"


# ------------------------------------------------------------------------------ command line

def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m vitis.vai_q_env",
                                description="Build or locate vai_q_tensorflow2 3.5 in its own cached venv.")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build it (or reuse the cached build)")
    b.add_argument("--src", help="Vitis-AI checkout, vai_q_tensorflow2.x dir or tarball "
                                 "[$VITIS_AI_SRC, else the vendored one]")
    b.add_argument("--python", help="interpreter for the venv (3.8-3.11) [$VAI_Q_PYTHON or python3.11 ...]")
    b.add_argument("--jobs", type=int, help="make -j [$VAI_Q_JOBS or 2]")
    b.add_argument("--force", action="store_true", help="rebuild even when cached")
    w = sub.add_parser("where", help="print the venv's python if built (exit 1 if not)")
    w.add_argument("--src")
    sub.add_parser("check", help="check the build tools and Python headers (exit 1 if missing)")
    sub.add_parser("apt-packages", help="print the Debian/Ubuntu packages of the build tools")
    args = p.parse_args(argv)
    try:
        if args.cmd == "apt-packages":
            print(" ".join(pkg for _, pkg in TOOLS))
            return 0
        if args.cmd == "check":
            check_tools()
            _check_headers(pick_python()[0])
            print("vai_q_tensorflow2 build tools: ok")
            return 0
        if args.cmd == "build":
            env = build(args.src, args.python, args.jobs, args.force)
            print(env.python)
            return 0
        env = find(args.src)
        if env is None:
            print(why_missing(args.src), file=sys.stderr)
            return 1
        print(env.python)
        return 0
    except VaiQError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1 if args.cmd == "check" else 2


if __name__ == "__main__":
    sys.exit(main())
