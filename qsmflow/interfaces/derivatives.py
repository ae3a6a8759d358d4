"""Write a run's derivatives into the BIDS Derivatives folder, all or nothing."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
from nibabel.openers import Opener
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from qsmflow.files import stage_file

from .images import load_data, save_like, work_image_path


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
                copy = lambda tmp, s=source, d=destination: _publish(s, d, tmp)  # noqa: E731
                staged.append((stage_file(destination, copy), destination))
                written.append(str(destination))
                metadata = dict(sidecar)
                if relative.endswith("_Chimap.nii.gz") and \
                        isdefined(self.inputs.chimap_metadata):
                    metadata.update(self.inputs.chimap_metadata)
                if metadata:
                    sidecar_path = destination.with_name(
                        destination.name.split(".")[0] + ".json")
                    text = json.dumps(metadata, indent=2) + "\n"
                    write = lambda tmp, t=text: Path(tmp).write_text(t)  # noqa: E731
                    staged.append((stage_file(sidecar_path, write), sidecar_path))
        except BaseException:
            for tmp, _ in staged:
                Path(tmp).unlink(missing_ok=True)
            raise
        for tmp, destination in staged:  # ... then renames, which do not fail half-way
            os.replace(tmp, destination)
        self._results["out_files"] = written
        return runtime


def _publish(source: str, destination: Path, tmp: str) -> None:
    """Copy ``source`` to ``tmp``, gzip-compressing an uncompressed intermediate
    (``work_image_path``) whose destination is ``.nii.gz``, at nibabel's level and with no
    time stamp in the gzip header (so that a rerun writes the same bytes)."""
    if destination.name.endswith(".gz") and not str(source).endswith(".gz"):
        with open(source, "rb") as src, open(tmp, "wb") as raw, gzip.GzipFile(
                filename="", mode="wb", fileobj=raw, mtime=0,
                compresslevel=Opener.default_compresslevel) as out:
            shutil.copyfileobj(src, out, length=1 << 22)
    else:
        shutil.copyfile(source, tmp)


class _FirstVolumeInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="3-D or 4-D image")


class _FirstVolumeOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class FirstVolume(SimpleInterface):
    """The first volume (echo 1) of a 4-D image, as a 3-D float32 image.

    BIDS allows a field map's ``magnitude`` only as a 3-D image.
    """

    input_spec = _FirstVolumeInputSpec
    output_spec = _FirstVolumeOutputSpec

    def _run_interface(self, runtime):
        data, affine = load_data(self.inputs.in_file, dtype=np.float32)
        first = data[..., 0] if data.ndim == 4 else data
        self._results["out_file"] = save_like(first, affine, work_image_path("first_volume"))
        return runtime
