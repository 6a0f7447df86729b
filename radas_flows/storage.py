"""One results location: a local (or NFS-mounted) folder, or a URI such as ``s3://bucket/x``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow.fs

__all__ = ["S3_BLOCK_ENV", "Storage", "is_uri", "normalize_root"]

#: A prefect-aws block whose credentials and endpoint an ``s3://`` results root uses here.
S3_BLOCK_ENV = "RADAS_S3_BLOCK"


def _block_filesystem(path: str) -> pyarrow.fs.FileSystem | None:
    """The filesystem of the block named in ``RADAS_S3_BLOCK`` for an ``s3://`` path, if any.

    A cluster job does not get this variable: it reads the cluster's own AWS environment.
    """
    name = os.environ.get(S3_BLOCK_ENV, "").strip()
    if not name or not path.startswith("s3://"):
        return None
    from radas_flows.aws_blocks import block_filesystem

    return block_filesystem(name)


def is_uri(path: str) -> bool:
    """Whether ``path`` names remote storage (``s3://...``, ``gs://...``) rather than a folder.

    Example:
        >>> is_uri("s3://bucket/runs"), is_uri("/mnt/nfs/runs")
        (True, False)
    """
    return "://" in path


def normalize_root(root: str) -> str:
    """A results root as stored: URIs without a trailing slash, folders absolute.

    Example:
        >>> normalize_root("s3://bucket/runs/")
        's3://bucket/runs'
    """
    if is_uri(root):
        return root.rstrip("/")
    return str(Path(root).expanduser().resolve())


class Storage:
    """A file or folder in a results location, read and written the same way everywhere.

    Local and NFS paths use the file system directly (writes are atomic: a temporary file
    renamed into place); URIs go through pyarrow's filesystem for their scheme (credentials from
    the environment, as Ray Tune reads them), or through ``filesystem`` when one is given.

    Example:
        >>> import tempfile
        >>> root = Storage(tempfile.mkdtemp())
        >>> root.child("exp").child("notes.txt").write_text("hello")
        >>> root.child("exp").child("notes.txt").read_text(), root.child("exp").is_dir()
        ('hello', True)
        >>> root.child("exp").sibling("exp__oom_round_1").path == f"{root.path}/exp__oom_round_1"
        True
    """

    def __init__(self, path: str | os.PathLike[str], filesystem: Any = None) -> None:
        self.path = os.fspath(path).rstrip("/") or "/"
        self.filesystem: pyarrow.fs.FileSystem | None = filesystem

    def __repr__(self) -> str:
        return f"Storage({self.path!r})"

    def __str__(self) -> str:
        return self.path

    @property
    def is_remote(self) -> bool:
        """True for a URI (or an explicit pyarrow filesystem), False for a folder here."""
        return self.filesystem is not None or is_uri(self.path)

    def child(self, name: str) -> Storage:
        """The entry ``name`` inside this folder."""
        return Storage(f"{self.path}/{name}", self.filesystem)

    def sibling(self, name: str) -> Storage:
        """The entry ``name`` beside this one (same parent folder)."""
        return Storage(f"{self.path.rsplit('/', 1)[0]}/{name}", self.filesystem)

    def _fs(self) -> tuple[pyarrow.fs.FileSystem, str]:
        if self.filesystem is not None:
            return self.filesystem, self.path
        block = _block_filesystem(self.path)
        if block is not None:
            return block, self.tune_path
        import pyarrow.fs

        return pyarrow.fs.FileSystem.from_uri(self.path)

    def _type(self) -> Any:
        fs, fs_path = self._fs()
        return fs.get_file_info(fs_path).type

    def is_dir(self) -> bool:
        """Whether a folder is stored here."""
        if not self.is_remote:
            return os.path.isdir(self.path)
        import pyarrow.fs

        return bool(self._type() == pyarrow.fs.FileType.Directory)

    def read_text(self) -> str | None:
        """The text of the file stored here, or None when there is none."""
        if not self.is_remote:
            local = Path(self.path)
            return local.read_text(encoding="utf-8", errors="replace") if local.is_file() else None
        import pyarrow.fs

        fs, fs_path = self._fs()
        if fs.get_file_info(fs_path).type != pyarrow.fs.FileType.File:
            return None
        with fs.open_input_stream(fs_path) as stream:
            return bytes(stream.readall()).decode("utf-8", errors="replace")

    def write_text(self, text: str) -> None:
        """Write a small file here (atomically on a folder), creating its parent folder."""
        if not self.is_remote:
            local = Path(self.path)
            local.parent.mkdir(parents=True, exist_ok=True)
            partial = local.with_name(f".{local.name}.partial")
            partial.write_text(text, encoding="utf-8")
            os.replace(partial, local)
            return
        fs, fs_path = self._fs()
        fs.create_dir(fs_path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(fs_path) as stream:
            stream.write(text.encode("utf-8"))

    def remove(self) -> None:
        """Delete the folder (or file) stored here, if any."""
        if not self.is_remote:
            if os.path.isdir(self.path):
                shutil.rmtree(self.path)
            elif os.path.isfile(self.path):
                os.remove(self.path)
            return
        import pyarrow.fs

        fs, fs_path = self._fs()
        kind = fs.get_file_info(fs_path).type
        if kind == pyarrow.fs.FileType.File:
            fs.delete_file(fs_path)
        elif kind != pyarrow.fs.FileType.NotFound:
            fs.delete_dir(fs_path)

    def check_writable(self) -> None:
        """Create this folder if needed and write a small probe file into it (and delete it).

        Raises:
            OSError: The folder cannot be created or written (read-only, permission, full), or
                the storage service does not answer.
        """
        probe_name = f".radas-write-check-{os.getpid()}"
        if self.is_remote:
            fs, fs_path = self._fs()
            probe_path = f"{fs_path.rstrip('/')}/{probe_name}"
            with fs.open_output_stream(probe_path) as stream:
                stream.write(b"\0")
            fs.delete_file(probe_path)
            return
        folder = Path(self.path)
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / probe_name
        try:
            with probe.open("wb") as f:
                f.write(b"\0" * 65536)
                f.flush()
                os.fsync(f.fileno())
        finally:
            probe.unlink(missing_ok=True)

    def tune_filesystem(self) -> pyarrow.fs.FileSystem | None:
        """What Ray Tune's ``storage_filesystem`` arguments take for this location."""
        return self.filesystem or _block_filesystem(self.path)

    @property
    def tune_path(self) -> str:
        """The path to give Ray Tune with :meth:`tune_filesystem` (no scheme with a block's).

        Example:
            >>> Storage("/r/u/exp").tune_path
            '/r/u/exp'
        """
        if self.filesystem is None and _block_filesystem(self.path) is not None:
            return self.path.removeprefix("s3://")
        return self.path

    def output_dir(self, user_name: str, full_name: str) -> str:
        """A local folder for the table and figure: this one, or a cache for remote storage.

        Example:
            >>> Storage("/r/u/exp").output_dir("u", "exp")
            '/r/u/exp'
        """
        if not self.is_remote:
            return self.path
        return str(cache_home() / "radas" / user_name / full_name)


def cache_home(environ: Mapping[str, str] | None = None) -> Path:
    """The user's cache folder: ``$XDG_CACHE_HOME`` when set to an absolute path, else ``~/.cache``.

    Example:
        >>> str(cache_home({"XDG_CACHE_HOME": "/fast/cache"}))
        '/fast/cache'
        >>> cache_home({"XDG_CACHE_HOME": "cache"}) == Path.home() / ".cache"
        True
    """
    configured = (os.environ if environ is None else environ).get("XDG_CACHE_HOME", "")
    if os.path.isabs(configured):  # the XDG spec: a relative value is ignored
        return Path(configured)
    return Path.home() / ".cache"
