"""Parameter, FLOP, memory and latency claims of the seed documents, located in their files.

These are claims, not results: each is a literal quoted from a seed document
(`../shared/seeds/`), found there at run time so the table cites file and line. The
study (`ffcore.study.architecture.claims_table`) puts each beside the figure measured on
the registered model the claim is about; nothing here is a measurement.

Percentages and ratios ("-56.8%", "2.31x") are derived from the claims below and are not
listed separately; accuracy claims (mAP) belong to the evaluation tables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# What a claim is about -> how the table names it.
QUANTITIES = {
    "parameters": "parameters",
    "gflops": "FLOPs (G)",
    "weights_mb": "model size / weight memory (MB)",
    "int8_mb": "INT8 model size (MB)",
    "latency_ms": "inference time (ms)",
    "fps": "frames per second",
    "runtime_memory_mb": "memory in use while running (MB)",
}

_CBAM_PARTS = ("backbone_attention", "neck_attention")


@dataclass(frozen=True)
class Claim:
    model: str          # registry name the claim is about, or a description when nothing registered matches
    quote: str          # the literal in the seed document
    source: str         # file under shared/seeds/
    context: str        # a phrase on the same line, to find the right occurrence
    quantity: str = "parameters"          # a key of QUANTITIES
    parts: tuple[str, ...] = ()           # module paths whose parameters the claim counts; () = whole model
    label: str = ""                       # what the seed calls the counted thing ("BiFPN", "CBAM", ...)
    note: str = ""                        # conditions the seed states (device, configuration)

    def __post_init__(self):
        if self.quantity not in QUANTITIES:
            raise ValueError(f"claim {self.quote!r} ({self.source}): unknown quantity {self.quantity!r}; "
                             f"use one of {', '.join(QUANTITIES)}")


def _parts(model: str, source: str, context_prefix: str, rows, note: str = "") -> list[Claim]:
    """Per-part claims of one table column: rows of (label, quote, parts, context suffix)."""
    return [Claim(model, quote, source, context_prefix + suffix, parts=parts, label=label, note=note)
            for label, quote, parts, suffix in rows]


_OVERVIEW, _README, _PLAN, _REPORT, _ANALYSIS = ("000_fork_project_overview.md", "001_readme_v1_v2_ultra.md",
                                                 "002_v2_implementation_plan.md", "003_v2_technical_report.md",
                                                 "004_v1_v2_architecture_analysis.md")
_V1_74 = "the seed's V1 at out_channel=74"
_V2_32 = "the seed's V2 at out_channel_v2=32"
_CUMULATIVE = "cumulative ablation (V1 with BiFPN_Light and SSH_Grouped{}): not registered"

SEED_CLAIMS: tuple[Claim, ...] = (
    # ------------------------------------------------------------------ 000 project overview
    Claim("featherface_v1", "~45K", _OVERVIEW, "MobileNet-0.25 Backbone (~45K params)", parts=("backbone",),
          label="MobileNet-0.25 backbone"),
    Claim("featherface_v1", "~490K", _OVERVIEW, "Total: ~490K parameters"),
    Claim("featherface_v2_vit", "<285K", _OVERVIEW, "Implémenter FeatherFaceV2 <285K params"),
    Claim("featherface_v2_vit", "~45K", _OVERVIEW, "UltraEfficientViT Backbone (~45K params)", parts=("backbone",),
          label="UltraEfficientViT backbone"),
    Claim("featherface_v2_vit", "~75K", _OVERVIEW, "PyramidAttentionFusion Neck (~75K params)", parts=("neck",),
          label="PyramidAttentionFusion neck"),
    Claim("featherface_v2_vit", "~100K", _OVERVIEW, "SharedDetectionHead (~100K params)", parts=("head",),
          label="SharedDetectionHead"),
    Claim("featherface_v2_vit", "~25K", _OVERVIEW, "DynamicChannelAttention (~25K params)",
          parts=("channel_attention",), label="DynamicChannelAttention"),
    Claim("featherface_v2_vit", "~285K", _OVERVIEW, "Total: ~285K parameters"),
    Claim("featherface_v2_vit", "~45K", _OVERVIEW, "Target: ~45K parameters", parts=("backbone",),
          label="UltraEfficientViT backbone"),
    Claim("featherface_v2_vit", "~75K", _OVERVIEW, "Target: ~75K parameters", parts=("neck",),
          label="PyramidAttentionFusion neck"),
    Claim("featherface_v2_vit", "~100K", _OVERVIEW, "Target: ~100K parameters", parts=("head",),
          label="SharedDetectionHead"),
    Claim("featherface_v1", "<8ms", _OVERVIEW, "| **Inference Time** |", quantity="latency_ms",
          note="target of the baseline reproduction; device not stated"),
    Claim("featherface_v1", "0.49MB", _OVERVIEW, "| **Model Size** |", quantity="weights_mb",
          note="target of the baseline reproduction"),
    Claim("featherface_v1", "<100MB", _OVERVIEW, "| **Memory Usage** |", quantity="runtime_memory_mb",
          note="target of the baseline reproduction"),
    Claim("featherface_v1", "<1G", _OVERVIEW, "| **FLOPs** |", quantity="gflops",
          note="target of the baseline reproduction; input size not stated"),
    # ------------------------------------------------------------------ 001 README (V1 / V2 Ultra)
    Claim("featherface_v1", "487K", _README, "FeatherFace V1 baseline (487K parameters)"),
    Claim("featherface_v2_ultra", "244K", _README, "revolutionary V2 Ultra (244K parameters)"),
    Claim("featherface_v1", "487,103", _README, "| **Parameters** |"),
    Claim("featherface_v2_ultra", "244,483", _README, "| **Parameters** |"),
    *[Claim("featherface_v2_ultra", "0 params", _README, f"{name}** (0 params)", parts=(f"techniques.{key}",),
            label=name)
      for name, key in (("Smart Feature Reuse", "smart_feature_reuse"),
                        ("Attention Multiplication", "attention_multiplication"),
                        ("Progressive Enhancement", "progressive_enhancement"),
                        ("Multi-Scale Intelligence", "multiscale_intelligence"))],
    Claim("featherface_v2_ultra", "<1K", _README, "Dynamic Weight Sharing** (<1K params)",
          parts=("techniques.dynamic_sharing",), label="Dynamic Weight Sharing"),
    Claim("featherface_v1", "487K", _README, "# V1 Baseline (487K parameters)"),
    Claim("featherface_v2_ultra", "244K", _README, "# V2 Ultra Revolutionary (244K parameters)"),
    Claim("featherface_v1", "487K", _README, "| **V1 Baseline** | 487K"),
    Claim("featherface_v1", "1.9MB", _README, "| **V1 Baseline** | 487K", quantity="weights_mb"),
    Claim("featherface_v2_ultra", "244K", _README, "| **V2 Ultra** | 244K"),
    Claim("featherface_v2_ultra", "1.2MB", _README, "| **V2 Ultra** | 244K", quantity="weights_mb"),
    Claim("featherface_v1", "487K", _README, "Exactly 487K parameters"),
    Claim("featherface_v1", "487K", _README, "predictions - V1 Baseline (487K parameters)"),
    Claim("featherface_v2_ultra", "244K", _README, "predictions - V2 Ultra Revolutionary (244K parameters"),
    # ------------------------------------------------------------------ 002 implementation plan
    Claim("featherface_v2", "0.25M", _PLAN, "**Model Size**: 0.25M parameters"),
    Claim("featherface_v1", "0.49M", _PLAN, "49% reduction from 0.49M"),
    Claim("featherface_v2", "25+", _PLAN, "**Speed**: 25+ FPS", quantity="fps",
          note="on entry-level mobile devices"),
    # ------------------------------------------------------------------ 003 V2 technical report
    Claim("featherface_v1", "592K", _REPORT, "(592K → 256K)"),
    Claim("featherface_v2", "256K", _REPORT, "(592K → 256K)"),
    Claim("featherface_v1", "592,371", _REPORT, "**Paramètres V1**"),
    Claim("featherface_v2", "256,156", _REPORT, "**Paramètres V2**"),
    Claim("featherface_v2", "213K", _REPORT, "**Paramètres**: 213K (35.8% du modèle)", parts=("backbone",),
          label="Backbone (MobileNetV1 0.25x)"),
    Claim("featherface_v1", "112K", _REPORT, "**Réduction**: 112K → 13K", parts=("neck",), label="BiFPN"),
    Claim("featherface_v2", "13K", _REPORT, "**Réduction**: 112K → 13K", parts=("neck",), label="BiFPN_Light"),
    Claim("featherface_v1", "233K", _REPORT, "**Réduction**: 233K → 24K", parts=("context",), label="SSH"),
    Claim("featherface_v2", "24K", _REPORT, "**Réduction**: 233K → 24K", parts=("context",), label="SSH_Grouped"),
    Claim("featherface_v1", "2K", _REPORT, "**Réduction**: 2K → 0.2K", parts=_CBAM_PARTS, label="CBAM"),
    Claim("featherface_v2", "0.2K", _REPORT, "**Réduction**: 2K → 0.2K", parts=_CBAM_PARTS, label="CBAM_Plus"),
    *_parts("featherface_v1", _REPORT, "| ", (
        ("Backbone", "213K", ("backbone",), "Backbone | 213K"),
        ("BiFPN", "112K", ("neck",), "BiFPN | 112K"),
        ("SSH", "233K", ("context",), "SSH | 233K"),
        ("CBAM", "2K", _CBAM_PARTS, "CBAM | 2K"),
        ("Heads", "32K", ("heads",), "Heads | 32K"))),
    *_parts("featherface_v2", _REPORT, "| ", (
        ("Backbone", "213K", ("backbone",), "Backbone | 213K | 213K"),
        ("BiFPN", "13K", ("neck",), "BiFPN | 112K | 13K"),
        ("SSH", "24K", ("context",), "SSH | 233K | 24K"),
        ("CBAM", "0.2K", _CBAM_PARTS, "CBAM | 2K | 0.2K"),
        ("Heads", "6K", ("heads",), "Heads | 32K | 6K"))),
    Claim("featherface_v1", "592,371", _REPORT, "| **Total** | **592,371**"),
    Claim("featherface_v2", "256,156", _REPORT, "| **Total** | **592,371** | **256,156**"),
    Claim("featherface_v1", "592K", _REPORT, "| Paramètres | 592K | 256K"),
    Claim("featherface_v2", "256K", _REPORT, "| Paramètres | 592K | 256K"),
    Claim("featherface_v1", "~1.2G", _REPORT, "| FLOPs | ~1.2G | ~0.6G", quantity="gflops",
          note="input size not stated"),
    Claim("featherface_v2", "~0.6G", _REPORT, "| FLOPs | ~1.2G | ~0.6G", quantity="gflops",
          note="input size not stated"),
    Claim("featherface_v1", "2.37MB", _REPORT, "| Mémoire | 2.37MB | 1.02MB", quantity="weights_mb"),
    Claim("featherface_v2", "1.02MB", _REPORT, "| Mémoire | 2.37MB | 1.02MB", quantity="weights_mb"),
    Claim("featherface_v1", "20ms", _REPORT, "| Temps inference | 20ms | 12ms", quantity="latency_ms",
          note="device not stated"),
    Claim("featherface_v2", "12ms", _REPORT, "| Temps inference | 20ms | 12ms", quantity="latency_ms",
          note="device not stated"),
    Claim("featherface_v1", "592K", _REPORT, "| V1 Baseline | 91.47%"),
    Claim("featherface_v1_bifpn_light", "467K", _REPORT, "| -BiFPN_Light |", label="V1 with BiFPN_Light"),
    Claim(_CUMULATIVE.format(""), "359K", _REPORT, "| -SSH_Grouped |"),
    Claim(_CUMULATIVE.format(" and CBAM_Plus"), "257K", _REPORT, "| -CBAM_Plus |"),
    Claim("featherface_v2", "256K", _REPORT, "| V2 Complete |"),
    Claim("featherface_v2", "3-5ms", _REPORT, "ONNX Runtime Mobile (3-5ms/image)", quantity="latency_ms",
          note="Android, ONNX Runtime Mobile"),
    Claim("featherface_v2", "2-4ms", _REPORT, "Core ML conversion (2-4ms/image)", quantity="latency_ms",
          note="iOS, Core ML"),
    Claim("featherface_v2", "1.02MB", _REPORT, "**Taille**: 1.02MB → 0.26MB", quantity="weights_mb"),
    Claim("featherface_v2", "0.26MB", _REPORT, "**Taille**: 1.02MB → 0.26MB", quantity="int8_mb"),
    Claim("featherface_v2", "256K", _REPORT, "**Réduction**: 256K → 205K"),
    Claim("featherface_v2_pruned20", "205K", _REPORT, "**Réduction**: 256K → 205K",
          note="structured pruning of 20% of the SSH modules"),
    Claim("MTCNN (not registered)", "1.2M", _REPORT, "| MTCNN |"),
    Claim("S3FD-Light (not registered)", "0.8M", _REPORT, "| S3FD-Light |"),
    Claim("retinaface_mnet025", "0.6M", _REPORT, "| RetinaFace-Mobile |"),
    Claim("featherface_v2", "0.26M", _REPORT, "| **FeatherFace V2** | **0.26M**"),
    Claim("featherface_v1", "601K", _REPORT, "Teacher (601K params)"),
    Claim("featherface_v1", "592K", _REPORT, "Expected (592K params)"),
    Claim("featherface_v1", "601K", _REPORT, "plage attendue (601K vs 592K)"),
    Claim("featherface_v1", "592K", _REPORT, "plage attendue (601K vs 592K)"),
    Claim("featherface_v1", "601,697", _REPORT, "Parameters: 601,697"),
    Claim("featherface_v2", "256K", _REPORT, "✅ **256K paramètres**"),
    # ------------------------------------------------------------------ 004 V1 / V2 analysis
    Claim("featherface_v1", "489K", _ANALYSIS, "2 répétitions pour 489K target"),
    *_parts("featherface_v1", _ANALYSIS, "| **", (
        ("Backbone", "213,072", ("backbone",), "Backbone** | 213,072 | 43.7%"),
        ("CBAM Backbone", "11,528", ("backbone_attention",), "CBAM Backbone** | 11,528"),
        ("BiFPN", "144,432", ("neck",), "BiFPN** | 144,432"),
        ("CBAM BiFPN", "10,656", ("neck_attention",), "CBAM BiFPN** | 10,656"),
        ("DCN", "98,835", ("context",), "DCN** | 98,835"),
        ("Channel Shuffle", "0", ("shuffle",), "Channel Shuffle** | 0"),
        ("Detection Heads", "8,580", ("heads",), "Detection Heads** | 8,580")), note=_V1_74),
    Claim("featherface_v1", "487K", _ANALYSIS, "| **TOTAL** | **487K**", note=_V1_74),
    Claim("featherface_v1", "488.7K", _ANALYSIS, "Architecture paper-compliant (488.7K target)"),
    Claim("featherface_v1", "487K", _ANALYSIS, "out_channel=74 pour 487K paramètres"),
    Claim("featherface_v1", "488.7K", _ANALYSIS, "paper-compliant, très proche de 488.7K)"),
    Claim("featherface_v1", "488.7K", _ANALYSIS, "V1 = 488.7K paramètres"),
    Claim("featherface_v1", "487K", _ANALYSIS, "double CBAM → 487K"),
    Claim("featherface_v1", "488.7K", _ANALYSIS, "très proche de 488.7K target)"),
    Claim("featherface_v2", "256K", _ANALYSIS, "**✅ V2** : 256K"),
    Claim("featherface_v1", "502K", _ANALYSIS, "**Paramètres** : 502K"),
    Claim("featherface_v1", "489K", _ANALYSIS, "paper target 489K"),
    Claim("featherface_v2", "256K", _ANALYSIS, "**Paramètres** : 256K (47.6%"),
    *_parts("featherface_v2", _ANALYSIS, "| **", (
        ("Backbone", "213,072", ("backbone",), "Backbone** | 213,072 | 83.2%"),
        ("SharedCBAMManager", "1,248", _CBAM_PARTS, "SharedCBAMManager** | 1,248"),
        ("BiFPN_Light", "18,432", ("neck",), "BiFPN_Light** | 18,432"),
        ("SSH_Grouped", "12,288", ("context",), "SSH_Grouped** | 12,288"),
        ("ChannelShuffle_Light", "0", ("shuffle",), "ChannelShuffle_Light** | 0"),
        ("SharedMultiHead", "11,520", ("heads",), "SharedMultiHead** | 11,520")), note=_V2_32),
    Claim("featherface_v2", "~256K", _ANALYSIS, "| **TOTAL** | **~256K**", note=_V2_32),
    Claim("featherface_v1", "489K", _ANALYSIS, "| **Paramètres Totaux** | 489K"),
    Claim("featherface_v2", "256K", _ANALYSIS, "| **Paramètres Totaux** | 489K | 256K"),
    *_parts("featherface_v1", _ANALYSIS, "| **", (
        ("CBAM", "13.5K", _CBAM_PARTS, "CBAM** | 13.5K"),
        ("BiFPN", "75K", ("neck",), "BiFPN** | 75K"),
        ("SSH", "170K", ("context",), "SSH** | 170K"),
        ("Detection Heads", "6K", ("heads",), "Detection Heads** | 6K"))),
    *_parts("featherface_v2", _ANALYSIS, "| **", (
        ("CBAM", "1.2K", _CBAM_PARTS, "CBAM** | 13.5K | 1.2K"),
        ("BiFPN", "18.4K", ("neck",), "BiFPN** | 75K | 18.4K"),
        ("SSH", "12.3K", ("context",), "SSH** | 170K | 12.3K"),
        ("Detection Heads", "11.5K", ("heads",), "Detection Heads** | 6K | 11.5K"))),
    Claim("featherface_v1", "489K", _ANALYSIS, "| **Paramètres** | **489K**"),
    Claim("featherface_v2", "256K", _ANALYSIS, "| **Paramètres** | **489K** (paper-compliant) | **256K**"),
    Claim("featherface_v1", "489K", _ANALYSIS, "**V1 Paramètres** : 489K"),
    Claim("featherface_v2", "256K", _ANALYSIS, "**V2 Paramètres** : 256K"),
    Claim("featherface_v1", "489K", _ANALYSIS, "Entraîner V1 (489K)"),
    Claim("featherface_v2", "256K", _ANALYSIS, "Entraîner V2 (256K)"),
)

_VALUE = re.compile(r"(?P<op>[<>~≈]?)(?P<a>\d[\d,]*(?:\.\d+)?)(?:-(?P<b>\d[\d,]*(?:\.\d+)?))?"
                    r"(?P<unit>K|k|M(?!B)|G)?(?:MB|ms|FPS|params)?(?P<plus>\+?)")
_MULTIPLIER = {None: 1.0, "K": 1e3, "k": 1e3, "M": 1e6, "G": 1.0}


def parse_value(quote: str) -> tuple[float | None, float | None, bool]:
    """(lower bound, upper bound, approximate) of a quoted figure, in the unit of its quantity
    (parameters as a count, FLOPs in G, sizes in MB, times in ms, FPS).

    '487,103' -> (487103, 487103, False); '~490K' -> (490000, 490000, True); '<285K' -> (None, 285000,
    False); '25+' -> (25, None, False); '3-5ms' -> (3, 5, False); '0.49M' -> (490000, 490000, False).
    """
    text = quote.replace(" ", "").replace("*", "")
    match = _VALUE.fullmatch(text)
    if not match:
        raise ValueError(f"cannot read a figure from {quote!r}")
    scale = _MULTIPLIER[match.group("unit")]
    low = float(match.group("a").replace(",", "")) * scale
    high = float(match.group("b").replace(",", "")) * scale if match.group("b") else low
    op = match.group("op")
    if op == "<":
        return None, high, False
    if op == ">" or match.group("plus"):
        return low, None, False
    return low, high, op in ("~", "≈")


def parse_count(quote: str) -> int:
    """A parameter count claimed as one number: '487,103' -> 487103, '~490K' -> 490000, '0.49M' -> 490000."""
    low, high, _ = parse_value(quote)
    if low is None or high is None or low != high:
        raise ValueError(f"{quote!r} is a bound or a range, not one parameter count")
    return int(round(low))


def compare(quote: str, measured: float) -> str:
    """How a claim stands against the measured figure: the claim's deviation for a single value,
    inside / outside for a bound or a range."""
    low, high, approximate = parse_value(quote)
    if measured is None:
        return "no measured counterpart"
    if low is not None and low == high:
        if measured == 0:
            return "matches (0)" if low == 0 else f"claims {low:g}; measured 0"
        deviation = 100.0 * (low - measured) / measured
        return "matches" if abs(deviation) < 0.05 else f"claim {deviation:+.1f}% vs measured"
    inside = (low is None or measured >= low) and (high is None or measured <= high)
    return "measured inside the claimed bound" if inside else "measured OUTSIDE the claimed bound"


def locate(claim: Claim, seeds_dir: Path) -> int | None:
    """1-based line of the claim in its source file (None when the file or the quote is not there)."""
    path = seeds_dir / claim.source
    if not path.is_file():
        return None
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if claim.quote in line and claim.context in line:
            return number
    return None
