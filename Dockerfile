# flm inside the Vitis AI TF2 docker: `flm vitis inspect|quantize|compile` get the image's
# vai_q_tensorflow2, vai_c_tensorflow2 and XIR (Python 3.8, TensorFlow 2.12, Keras 2).
#
#   docker build -t flm-vitis .
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD":/workspace flm-vitis \
#       flm vitis quantize --run runs/NAME --mode ptq --data /data   (add -v /path/to/data:/data)
#
# The project is installed with --no-deps: the image's TensorFlow 2.12 and the Vitis AI fork
# of tensorflow-model-optimization must stay exactly as shipped. Only click and OpenCV are
# added when the environment lacks them.
ARG VITIS_AI_IMAGE=xilinx/vitis-ai-tensorflow2-cpu:ubuntu2004-3.5.0.300
FROM ${VITIS_AI_IMAGE}

LABEL org.opencontainers.image.title="flm-vitis" \
      org.opencontainers.image.description="flm (MobileNetV2-PFLD landmarks) in the Vitis AI TF2 docker"

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# pip writes into the conda env (owned by the image's vitis-ai-user); names, not uids: the
# base image creates vitis-ai-user without a fixed uid.
# hadolint ignore=DL3066
USER root

# The conda env first on PATH, so `flm`, `python` and vai_c_tensorflow2 work without
# `conda activate` (non-interactive `docker run` never reads the image's bashrc).
ENV VAI_CONDA_ENV=/opt/vitis_ai/conda/envs/vitis-ai-tensorflow2
ENV PATH=${VAI_CONDA_ENV}/bin:/opt/vitis_ai/conda/bin:${PATH} \
    LD_LIBRARY_PATH=${VAI_CONDA_ENV}/lib:/opt/xilinx/xrt/lib${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}} \
    PYTHONNOUSERSITE=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    FLM_CACHE_DIR=/tmp/flm-cache \
    MPLCONFIGDIR=/tmp/matplotlib

COPY . /opt/flm

RUN if ! python -c "import click" 2>/dev/null; then \
        pip install --no-cache-dir "click>=8.1,<9"; \
    fi \
    && if ! python -c "import cv2" 2>/dev/null; then \
        pip install --no-cache-dir "opencv-python-headless>=4.6,<5"; \
    fi \
    && pip install --no-cache-dir --no-deps /opt/flm \
    && python -c "import tensorflow as tf, vitis.commands; print('flm on TensorFlow', tf.__version__)" \
    && flm vitis --help > /dev/null \
    && command -v vai_c_tensorflow2

# hadolint ignore=DL3066
USER vitis-ai-user
WORKDIR /workspace
CMD ["flm", "vitis", "--help"]
