"""Defaults of the Vitis AI flow (docs/vitis-ai.md), in one place.

Everything here is a fact read from the Vitis AI 3.5 sources or a choice of this
project; the UNVERIFIED ones (the board's fingerprint above all) are options on
the command line rather than constants buried in code.
"""
from dataclasses import asdict, dataclass
from typing import Any, Dict, Tuple

from quant.config import PtqConfig, QatConfig
from runtime.preprocess import CROP_SIZE

#: The KV260's DPU (Kria benchmark overlay, one B4096 core at 300 MHz).
DEFAULT_TARGET = "DPUCZDX8G_ISA1_B4096"

#: The docker image that provides vai_q_tensorflow2, vai_c_tensorflow2 and XIR (Python 3.8, TF 2.12).
VITIS_AI_IMAGE = "xilinx/vitis-ai-tensorflow2-cpu:ubuntu2004-3.5.0.300"
#: Its conda environment and its prefix (the image's conda lives in /opt/vitis_ai/conda).
CONDA_ENV = "vitis-ai-tensorflow2"
CONDA_PREFIX = "/opt/vitis_ai/conda/envs/" + CONDA_ENV
#: Tag of the project's image built from the repository's Dockerfile.
FLM_IMAGE = "flm-vitis"

#: DPUCZDX8G_ISA1_B4096 fingerprints: VART refuses an xmodel whose fingerprint differs from
#: the loaded DPU's ("CHECK fingerprint fail"). Vitis AI 3.0/3.5's target_factory gives the
#: first; Vitis AI 2.5 (and, reportedly, Kria Ubuntu's kv260-benchmark-b4096 overlay) the second.
FINGERPRINTS: Dict[str, str] = {
    "vai3": "0x101000056010407",
    "vai2.5": "0x101000016010407",
}
#: What a model compiled for DEFAULT_TARGET by the 3.5 compiler carries.
DEFAULT_FINGERPRINT = FINGERPRINTS["vai3"]

#: `--arch NAME` presets: arch.json files inside the Vitis AI docker.
ARCH_PRESETS: Dict[str, str] = {
    "kv260": "/opt/vitis_ai/compiler/arch/DPUCZDX8G/KV260/arch.json",
    "zcu102": "/opt/vitis_ai/compiler/arch/DPUCZDX8G/ZCU102/arch.json",
    "zcu104": "/opt/vitis_ai/compiler/arch/DPUCZDX8G/ZCU104/arch.json",
}

#: Executables and modules, named in error messages.
COMPILER = "vai_c_tensorflow2"
VAI_Q_MODULE = "tensorflow_model_optimization.quantization.keras.vitis_quantize"
VAI_INSPECT_MODULE = "tensorflow_model_optimization.quantization.keras.vitis_inspect"

#: Quantized model file names in the run directory, by --mode / --model.
QUANT_OUTPUTS: Dict[str, str] = {"ptq": "vitis_ptq.h5", "qat": "vitis_qat.h5"}
#: Sub-directory of the run for everything else the Vitis flow writes.
VITIS_DIR = "vitis"
BUNDLE_DIR = "bundle"


#: The TFMOT flow's defaults, shared so both quantizers see the same data and schedule.
_PTQ, _QAT = PtqConfig(), QatConfig()


@dataclass
class VitisConfig:
    """Hyperparameters of the Vitis AI quantizer/compiler drivers (CLI flags override)."""

    target: str = DEFAULT_TARGET
    input_shape: Tuple[int, int, int, int] = (1, CROP_SIZE, CROP_SIZE, 1)  # batch 1: one DPU core
    # PTQ (pof2s): the same calibration as the TFMOT flow (quant.config.PtqConfig: 500 crops).
    calib_size: int = _PTQ.calib_images
    calib_batch_size: int = _PTQ.calib_batch
    calib_seed: int = _PTQ.calib_seed
    include_cle: bool = True
    cle_steps: int = 10
    include_fast_ft: bool = False
    fast_ft_epochs: int = 10
    # PTQ: the head emits landmarks minus this (the crop centre), which the runtime adds back after
    # the DPU's int8 output: a symmetric grid then covers [-0.5, 0.5) at half the step of [-1, 1)
    # (quant.pof2.OutputOffset; the record beside the xmodel carries it). 0 = off.
    output_offset: float = _PTQ.pof2_output_offset
    # QAT (8bit_tqt, init_quant=True), fine-tuning train.h5: quant.config.QatConfig's schedule.
    qat_epochs: int = _QAT.epochs
    qat_lr: float = _QAT.lr
    qat_lr_min: float = _QAT.lr_min
    qat_batch_size: int = _QAT.batch_size
    qat_max_images: int = _QAT.max_images  # 0 = every training image
    qat_steps_per_epoch: int = _QAT.steps_per_epoch  # 0 = one pass over the training split
    freeze_bn_delay: int = 1000
    # Golden data (VitisQuantizer.dump_model): how many calibration crops to dump.
    dump_samples: int = 1
    # Compiler.
    net_name: str = "flm_pfld"

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    def input_shape_option(self) -> str:
        """The compiler's `--options` input_shape string, e.g. "1,112,112,1"."""
        return ",".join(str(int(v)) for v in self.input_shape)


@dataclass(frozen=True)
class DpuLimits:
    """DPUCZDX8G_ISA1_B4096 operator limits (target prototxt + UG1414; docs/vitis-ai.md §4)."""

    name: str = DEFAULT_TARGET
    conv_kernel: Tuple[int, int] = (1, 16)
    conv_stride: Tuple[int, int] = (1, 8)
    #: kernel_w * kernel_h * ceil(in_channels / conv_icp) must not exceed this.
    conv_weight_budget: int = 2048
    conv_icp: int = 16
    max_channels: int = 4096
    #: Depthwise conv and pooling run on the ALU.
    alu_kernel: Tuple[int, int] = (1, 256)
    alu_stride: Tuple[int, int] = (1, 256)
    #: Left/top padding the engines accept.
    pad: Tuple[int, int] = (0, 15)
    #: LeakyReLU: the DPU implements alpha 0.1 as 26/256.
    leaky_alpha: float = 0.1
    leaky_alpha_dpu: float = 26.0 / 256.0
