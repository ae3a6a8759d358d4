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


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_copy(source, destination: Path) -> None:
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.",
                               suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, destination)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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

    Each file (and sidecar) is written to a temporary name in its target folder and
    renamed, so a reader never sees half a file, and because this node runs only when
    every upstream stage succeeded, a failed run writes nothing at all.
    """

    input_spec = _DerivativesSinkInputSpec
    output_spec = _DerivativesSinkOutputSpec

    def _run_interface(self, runtime):
        n = len(self.inputs.in_files)
        if not (len(self.inputs.out_paths) == len(self.inputs.sidecars) == n):
            raise ValueError("in_files, out_paths and sidecars must have the same length")
        out_dir = Path(self.inputs.out_dir)
        written = []
        for source, relative, sidecar in zip(self.inputs.in_files, self.inputs.out_paths,
                                             self.inputs.sidecars):
            destination = out_dir / relative
            atomic_copy(source, destination)
            written.append(str(destination))
            metadata = dict(sidecar)
            if relative.endswith("_Chimap.nii.gz") and isdefined(self.inputs.chimap_metadata):
                metadata.update(self.inputs.chimap_metadata)
            if metadata:
                sidecar_path = destination.with_name(
                    destination.name.split(".")[0] + ".json")
                atomic_write_text(sidecar_path, json.dumps(metadata, indent=2) + "\n")
        self._results["out_files"] = written
        return runtime
