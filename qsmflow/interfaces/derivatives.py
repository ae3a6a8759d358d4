"""Write a run's derivatives into the BIDS Derivatives folder, all or nothing."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)


def _file_mode() -> int:
    """The mode a plain ``open()`` would give a new file (0o666 minus the umask):
    ``mkstemp`` creates 0o600 files, which the rest of a lab could not read."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _stage(destination: Path, write) -> str:
    """A temporary file beside ``destination``, filled by ``write(path)``; removed on error."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.",
                               suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, _file_mode())
        write(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _write_text(text: str):
    return lambda tmp: Path(tmp).write_text(text)


def _copy_from(source):
    return lambda tmp: shutil.copyfile(source, tmp)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    os.replace(_stage(Path(path), _write_text(text)), path)


def atomic_copy(source, destination: Path) -> None:
    os.replace(_stage(Path(destination), _copy_from(source)), destination)


class _DerivativesSinkInputSpec(BaseInterfaceInputSpec):
    in_files = traits.List(File(exists=True), mandatory=True)
    out_paths = traits.List(traits.Str, mandatory=True, desc="paths relative to out_dir")
    sidecars = traits.List(traits.Dict, mandatory=True, desc="JSON sidecar per file ({}: none)")
    chimap_metadata = traits.Dict(desc="merged into the sidecar of the *_Chimap file")
    out_dir = Directory(mandatory=True)


class _DerivativesSinkOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True))


class DerivativesSink(SimpleInterface):
    """Copy every output into place only after all of them exist.

    Every file (and sidecar) is first written to a temporary name in its target folder,
    and only when all of them are complete are they renamed into place: a reader never
    sees half a file, a sink that fails (a full disk) leaves no output of its run, and
    because this node runs only when every upstream stage succeeded, a failed run writes
    nothing at all.
    """

    input_spec = _DerivativesSinkInputSpec
    output_spec = _DerivativesSinkOutputSpec

    def _run_interface(self, runtime):
        n = len(self.inputs.in_files)
        if not (len(self.inputs.out_paths) == len(self.inputs.sidecars) == n):
            raise ValueError("in_files, out_paths and sidecars must have the same length")
        out_dir = Path(self.inputs.out_dir)
        written, staged = [], []  # staged: (temporary file, destination)
        try:  # first every file to a temporary name (a full disk fails here) ...
            for source, relative, sidecar in zip(self.inputs.in_files, self.inputs.out_paths,
                                                 self.inputs.sidecars, strict=True):
                destination = out_dir / relative
                staged.append((_stage(destination, _copy_from(source)), destination))
                written.append(str(destination))
                metadata = dict(sidecar)
                if relative.endswith("_Chimap.nii.gz") and \
                        isdefined(self.inputs.chimap_metadata):
                    metadata.update(self.inputs.chimap_metadata)
                if metadata:
                    sidecar_path = destination.with_name(
                        destination.name.split(".")[0] + ".json")
                    text = json.dumps(metadata, indent=2) + "\n"
                    staged.append((_stage(sidecar_path, _write_text(text)), sidecar_path))
        except BaseException:
            for tmp, _ in staged:
                Path(tmp).unlink(missing_ok=True)
            raise
        for tmp, destination in staged:  # ... then renames, which do not fail half-way
            os.replace(tmp, destination)
        self._results["out_files"] = written
        return runtime
