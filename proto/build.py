"""Generate the Python modules of every ``.proto`` under ``proto/`` with grpcio-tools.

The generated ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` files are written next to their
``.proto`` (``proto/gpufleet/v1/agent.proto`` -> ``proto/gpufleet/v1/agent_pb2.py``), with the
directory above ``proto/`` as the include root, so the absolute imports that grpc emits
are rewritten to the installed package name (``from proto.gpufleet.v1 import agent_pb2`` becomes
``from gpufleet.proto.gpufleet.v1 import agent_pb2``). They are git-ignored.

Staleness is decided by content, not mtimes: a stamp file holds the SHA-256 of every ``.proto``
source (and of this generator's settings). A copy of the tree that reset mtimes, a fresh clone
and CI all do the right thing: generate when the stamp does not match, otherwise nothing.

Generation happens when the package is built (``setup.py``'s build step runs :func:`ensure_generated`,
for wheels and editable installs alike), never at import: contract packages only call
:func:`require_generated`, which says what to run when the modules are missing. After editing a
``.proto`` in a checkout, run ``python -m gpufleet.proto.build`` (or reinstall).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PROTO_DIR = Path(__file__).resolve().parent
INCLUDE_ROOT = PROTO_DIR.parent
STAMP = PROTO_DIR / "_generated.stamp"
# Bump when the protoc invocation below changes, so existing outputs are regenerated.
GENERATOR_SETTINGS = "python_out+pyi_out+grpc_python_out v1"
_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
#: The import name of the folder that holds the sources, once installed.
PACKAGE = "gpufleet.proto"


class ProtoBuildError(RuntimeError):
    """Generating Python code from the ``.proto`` sources failed."""


def proto_sources(proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Every ``.proto`` file under ``proto_dir``, in a stable order."""
    return sorted(proto_dir.rglob("*.proto"))


def expected_outputs(sources: list[Path]) -> list[Path]:
    """The generated files that must exist for ``sources``."""
    return [src.with_name(src.stem + suffix) for src in sources for suffix in _SUFFIXES]


def source_digest(sources: list[Path], include_root: Path = INCLUDE_ROOT) -> str:
    """SHA-256 over the generator settings and each source's path and content."""
    digest = hashlib.sha256(GENERATOR_SETTINGS.encode())
    for src in sources:
        digest.update(src.relative_to(include_root).as_posix().encode() + b"\0")
        digest.update(src.read_bytes() + b"\0")
    return digest.hexdigest()


def is_current(proto_dir: Path = PROTO_DIR) -> bool:
    """True when the stamp matches the sources and every generated file exists."""
    stamp = proto_dir / STAMP.name
    sources = proto_sources(proto_dir)
    try:
        recorded = stamp.read_text().strip()
    except FileNotFoundError:
        return False
    if recorded != source_digest(sources, proto_dir.parent):
        return False
    return all(out.exists() for out in expected_outputs(sources))


def generate(proto_dir: Path = PROTO_DIR, package: str = PACKAGE) -> list[Path]:
    """Run protoc over every source; returns the files written. Raises ProtoBuildError.

    protoc writes imports relative to the include root (``from proto.x import y``); they are rewritten
    to ``package`` (``from gpufleet.proto.x import y``), the name the folder is installed under."""
    try:
        from grpc_tools import protoc
    except ImportError as err:
        raise ProtoBuildError(
            f"generating Python code from {proto_dir}/*.proto: grpcio-tools is not installed "
            "(pip install grpcio-tools, or run `python -m gpufleet.proto.build` where it is)"
        ) from err
    include_root = proto_dir.parent
    sources = proto_sources(proto_dir)
    well_known = _well_known_include()
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="gpufleet-protoc-") as tmp:
        args = [
            "grpc_tools.protoc",
            f"-I{include_root}",
            f"-I{well_known}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(src.relative_to(include_root)) for src in sources),
        ]
        code = protoc.main(args)
        if code != 0:
            raise ProtoBuildError(f"generating Python code from {proto_dir}/*.proto: protoc exited {code}")
        for out in expected_outputs(sources):
            produced = Path(tmp) / out.relative_to(include_root)
            if not produced.exists():
                raise ProtoBuildError(f"generating {out}: protoc wrote no such file")
            text = re.sub(rf"^(from|import) {re.escape(proto_dir.name)}\.", rf"\1 {package}.",
                          produced.read_text(), flags=re.M)
            produced.write_text(text)
            try:
                os.replace(produced, out)
            except OSError as err:
                # cross-device temp dir: copy then rename inside the target directory
                _copy_atomically(produced, out, err)
            written.append(out)
    _write_atomically(proto_dir / STAMP.name, source_digest(sources, include_root) + "\n")
    log.info("generated proto modules count=%d dir=%s", len(written), proto_dir)
    return written


def ensure_generated(proto_dir: Path = PROTO_DIR) -> None:
    """Generate the Python modules unless they are current. Raises ProtoBuildError."""
    if is_current(proto_dir):
        return
    try:
        generate(proto_dir)
    except OSError as err:
        raise ProtoBuildError(f"writing generated proto modules into {proto_dir}: {err}") from err


def require_generated(proto_dir: Path = PROTO_DIR) -> None:
    """Raise ProtoBuildError, saying what to run, when the generated modules are missing."""
    missing = [out for out in expected_outputs(proto_sources(proto_dir)) if not out.exists()]
    if missing:
        raise ProtoBuildError(
            f"the generated gRPC modules are missing ({missing[0].name} and {len(missing) - 1} more in "
            f"{proto_dir}); they are built with the package: run `pip install -e .` again, or "
            "`python -m gpufleet.proto.build` with grpcio-tools installed"
        )


def _well_known_include() -> Path:
    from importlib.resources import files

    return Path(str(files("grpc_tools") / "_proto"))


def _copy_atomically(src: Path, dst: Path, original: OSError) -> None:
    try:
        _write_atomically(dst, src.read_text())
    except OSError as err:
        raise ProtoBuildError(f"writing {dst}: {err} (after {original})") from err


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    try:
        written = generate()
    except ProtoBuildError as err:
        print(f"proto build failed: {err}", file=sys.stderr)
        return 1
    for path in written:
        print(path.relative_to(INCLUDE_ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
