"""Quantization defaults in one place (the paper's values where it gives them).

CLI flags override these; what a command actually used is written to the run's
quant.json next to its wall times, so Table 2 can say how each artifact was made.
"""
import os
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Tuple

from runtime.preprocess import CROP_CENTRE

#: Quantization schemes: "default" = TFLite-style 8-bit (symmetric per-tensor weights,
#: asymmetric activations); "pof2" = the DPU's symmetric power-of-two scales.
SCHEMES = ("default", "pof2")
#: TFLite INT8 input/output tensor types (the inside is INT8 either way).
IO_TYPES = ("int8", "float")
#: Weight scale granularity of a PTQ file (PtqConfig.granularity, .onnx_granularity).
GRANULARITIES = ("per-tensor", "per-channel")
#: file-name suffix of a PTQ comparison variant at that granularity (PtqConfig.also_other_granularity)
GRANULARITY_SUFFIX = {"per-tensor": "_pt", "per-channel": "_pc"}


def comparison_file(filename: str, granularity: str) -> str:
    """The name of `filename`'s comparison variant at `granularity` (ptq_int8.onnx, per-tensor ->
    ptq_int8_pt.onnx): what the PTQ flow writes, deletes when stale, and the report lists."""
    stem, ext = os.path.splitext(filename)
    return stem + GRANULARITY_SUFFIX[granularity] + ext


def granularity_variants(filename: str, granularity: str, also_other: bool) -> List[Tuple[str, str]]:
    """(granularity, file) pairs a PTQ flow writes: `filename` at `granularity`, then, with
    `also_other`, the comparison variant at the other one (ptq_int8.onnx -> ptq_int8_pt.onnx)."""
    if granularity not in GRANULARITIES:
        raise ValueError("unknown weight granularity %r (choose from %s)"
                         % (granularity, ", ".join(GRANULARITIES)))
    out = [(granularity, filename)]
    if also_other:
        other = [g for g in GRANULARITIES if g != granularity][0]
        out.append((other, comparison_file(filename, other)))
    return out


#: Activation-range calibration of the default scheme ("tflite" = the TFLite converter's own).
CALIBRATIONS = ("mse", "percentile", "minmax", "tflite")


@dataclass
class PtqConfig:
    """Post-training quantization."""

    calib_images: int = 500  # paper: 500 training images
    calib_seed: int = 0
    calib_batch: int = 32
    io: str = "int8"
    # Per-tensor weight scales by default: TFLite stores a float32 scale AND an int64 zero
    # point per output channel of every weight and bias tensor, which costs ~0.24 MB on the
    # width-1.0 model (1.74 MB vs 1.50 MB) and breaks the paper's 1.65 MB. The DPU is
    # per-tensor too. The per-channel TFLite variant is still written for comparison.
    granularity: str = "per-tensor"
    # ptq_int8.onnx's weight scales. Per output channel since stop 37 (1.63 MB, within 1.65): its
    # weights are 7-bit (ort_reduce_range), and per tensor they cost twice what every other PTQ file
    # costs. Validation NME minus FP32 over the six runs of stop 35-36's scheme (runs/*/metrics.json):
    # per tensor +0.080 to +0.108 pp, per channel +0.045 to +0.059, PTQ TFLite ~+0.04 (on the 68
    # test faces per channel was worse in four of six; the choice is made on validation).
    onnx_granularity: str = "per-channel"
    # also write each PTQ file at the other weight granularity, as comparison rows of the report:
    # ptq_int8_pc.tflite (or _pt) and ptq_int8_pt.onnx (or _pc); GRANULARITY_SUFFIX names them
    also_other_granularity: bool = True
    # Activation ranges: "mse" = vai_q's MIN_MSE search on the quantized network (pof2 twin,
    # quant.ranges.mse_ranges); "percentile" clips each tensor at the 99.9th percentile (and the
    # 0.1th for signed tensors); "minmax" is what TFLite's own calibrator does ("tflite" runs
    # that calibrator instead of ours). The unbounded ReLU activations are heavy-tailed (max ~
    # 10 x p99.9), worst at the multi-scale concat. Val NME of the fake-quant model on the
    # wing-loss release (FP32 4.86 %): mse 4.80 %, p99.9 6.98 %, minmax 14.3 % (a w0.25 run,
    # FP32 8.12 %, had minmax 8.41 %, p99.99 8.18 %, p99.9 8.03 %).
    act_calibration: str = "mse"
    act_percentile: float = 99.9
    # ONNX Runtime static quantization (QDQ). On this AVX2 CPU the U8S8 kernels saturate
    # int16 pair sums with full 8-bit int8 weights (docs/stack-notes.md). Two ways out: 7-bit
    # int8 weights (U8S8 reduce_range, the default) or uint8 weights (U8U8, full 8 bits).
    # Val NME, w0.25 run (FP32 8.12 %): U8U8 8.12 / 8.14 (per-tensor / per-channel), U8S8
    # reduce_range 8.20 / 8.16; w1.0 runs/faces98_w1 (FP32 9.07 %): U8U8 9.02, U8S8 rr 8.98.
    # Batch-1 p50 at w1.0, 2 threads, idle: U8S8 rr 1.28 ms, U8U8 3.0 ms, FP32 3.4 ms
    # (U8U8 runs ORT's slow generic path) -- so 7-bit U8S8 is the default.
    ort_weight_type: str = "int8"
    ort_reduce_range: bool = True
    ort_calibrate_method: str = "Percentile"  # with act_percentile, asymmetric
    # pof2: positions tried above the non-overflow one (vitis-ai.md section 5: +0..4, MIN_MSE)
    pof2_search: int = 4
    # pof2: values sampled per tensor per calibration batch for the activation MSE search
    pof2_sample: int = 20000
    # pof2: emulate the DPU's average pooling (window sum x k/2^n instead of 1/area)
    pof2_dpu_avgpool: bool = True
    # pof2: cross-layer equalization steps first, as vai_q's PTQ does by default (include_cle=True,
    # cle_steps=10): without it only 70 of 152 fix positions matched vai_q's (scripts/compare_vai_q.py)
    pof2_cle_steps: int = 10
    # pof2: the head emits landmarks minus the crop centre, added back after the int8 output
    # (quant.pof2.OutputOffset; 0 = off). Val NME of runs/cyc_s23 (FP32 3.330 %): 3.507 % without,
    # 3.424 % with 0.5; the per-point mean shape as offset (position 9, clipping) 3.438 %.
    pof2_output_offset: float = CROP_CENTRE
    # the same CLE before the TFLite and ORT PTQ and QAT (the default scheme; 0 = off), as vai_q does.
    # Measured on the wing-loss release (FP32 test 9.96 %): TFLite PTQ 11.93 -> 11.84 %, ORT 13.09 ->
    # 13.23 %, QAT's calibrated start 7.01 -> 6.98 % val: no real effect. What pof2 does differently and
    # reaches 10.07 % is the MSE search of each range on the quantized network, not CLE.
    cle_steps: int = 10

    def cle_steps_for(self, scheme: str) -> int:
        """CLE steps before quantizing with `scheme` (pof2 has its own, matched to vai_q)."""
        return self.pof2_cle_steps if scheme == "pof2" else self.cle_steps

    @property
    def range_method(self) -> str:
        """quant.ranges method of the default scheme ("tflite" = the converter's own min/max)."""
        return "minmax" if self.act_calibration == "tflite" else self.act_calibration


@dataclass
class QatConfig:
    """Quantization-aware fine-tuning of the trained FP32 model (same loss as training)."""

    epochs: int = 4
    lr: float = 2e-5  # ~1/50 of training's 1e-3: fine-tune, do not retrain
    lr_min: float = 2e-6  # cosine decay to this over the fine-tune
    patience: int = 2  # early stopping on validation NME (epochs)
    batch_size: int = 32
    steps_per_epoch: int = 0  # 0 = one pass over the training split
    max_images: int = 0  # 0 = all training images (tests use a few dozen)
    calib_images: int = 500  # activation ranges are initialised on these before fine-tuning
    # Keep the calibrated activation ranges during fine-tuning (True) or let TFMOT's EMA of
    # batch min/max move them (False): the EMA drifts back towards the outliers.
    frozen_ranges: bool = True
    val_images: int = 0  # 0 = whole validation split
    seed: int = 0
    # augmentation of the fine-tuning crops: a preset of keras_flm.config.AUGMENT_PRESETS, or "run"
    # for the run's own recipe (heavy on the full-size runs: on a head refitted by
    # keras_flm/head_refit.py, fine-tuning on it pulled the head back)
    augment: str = "run"
    # qat_int8.onnx's 7-bit weights per output channel (True) or per tensor: ORT re-quantizes the
    # QAT-tuned float weights to 7 bits (PtqConfig.ort_reduce_range), off the 8-bit grid QAT trained
    # on, and per channel loses less. Validation NME of the PTQ ONNX files, per tensor -> per channel,
    # on four release candidates: cyc_s23 3.399 -> 3.381, cyc_s24 3.348 -> 3.310, cyc_s25 3.316 ->
    # 3.293, pose3_s27 3.303 -> 3.265 % (FP32 3.330 / 3.268 / 3.242 / 3.229). Same U8S8 kernels.
    onnx_per_channel: bool = True


@dataclass
class ExportConfig:
    onnx_opset: int = 17
    parity_crops: int = 32  # real crops used for every export's parity check
    # Max |diff| (crop-normalised units) an FP32 export may differ from Keras: float32
    # re-association of ~1e3-term sums gives ~1e-6; 1e-4 = 0.011 px on a 112-px crop.
    fp32_tolerance: float = 1e-4


@dataclass
class BenchConfig:
    """`flm bench` (Table 3): timing loop, repeats and the end-to-end video."""

    iters: int = 200  # timed calls per batch size and repeat
    warmup: int = 20  # untimed calls before each timed loop
    repeats: int = 3  # passes over all artifacts (interleaved, so VM drift hits every row alike)
    threads: int = 2  # intra-op threads of ONNX Runtime / TFLite / TF (the machine's 2 cores)
    # intra-op threads inside the end-to-end pipeline: `flm-dpu run`'s default (1), because the other
    # core decodes video, detects and draws; 2 spinning ORT threads there halve the FPS on 2 cores
    pipeline_threads: int = 1
    batches: Tuple[int, ...] = (1, 8)  # throughput batch sizes; latency percentiles come from batch 1
    frames: int = 300  # end-to-end pipeline frames per repeat (the video loops; 0 = skip)
    video_frames: int = 300  # length of the synthetic video rendered when none is given
    video_size: Tuple[int, int] = (640, 480)
    video_seed: int = 0
    detect_every: int = 30  # as `flm-dpu run`'s default
    eval_limit: Optional[int] = None  # foreign-model evaluation: first N test faces (None = all)


def to_dict(*cfgs: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for c in cfgs:
        out.update(asdict(c))
    return out
