"""The registered detectors: the three reference models and the V1 ablation variants.

Each ablation variant starts from FeatherFace V1 and swaps in ONE FeatherFace V2 part,
run at V1's 64 channels (the thesis's ablation table).
"""

from __future__ import annotations

from dataclasses import replace

from ffcore.models.detector import DetectorConfig, build_detector
from ffcore.models.registry import register_model

RETINAFACE_MNET025 = DetectorConfig()

FEATHERFACE_V1 = DetectorConfig(backbone_attention="cbam", neck="bifpn", neck_attention="cbam",
                                context="deformable_ssh", shuffle="shuffle")

# V2 trains with DropBlock (block 3, drop probability 0.1; 003_v2_technical_report.md, 3.2).
# The report does not say where; it sits on the three backbone outputs, as Ghiasi et al. apply
# it to a backbone's later stages. Training only: eval outputs and weights are unchanged.
FEATHERFACE_V2 = DetectorConfig(backbone_attention="shared_cbam", neck="bifpn_light", neck_channels=32,
                                neck_attention="shared_cbam", context="grouped_ssh", shuffle="shuffle_light",
                                head="shared_heads", dropblock_prob=0.1, dropblock_size=3)

# The thesis fork's current models (fokouarnaud/FeatherFace f023145). The fork shrank V1 to 52
# channels after the backbone until its true count (488,664) matched the paper's "0.49M", which is
# thop's count of the released 64-channel V1; it applies attention without V1's residual and keeps
# only the shuffle itself after the SSH.
FEATHERFACE_CBAM_EXACT = replace(FEATHERFACE_V1, neck_channels=52, backbone_attention="cbam_direct",
                                 neck_attention="cbam_direct", shuffle="channel_shuffle")
FEATHERFACE_ECA_CBAM = replace(FEATHERFACE_CBAM_EXACT, backbone_attention="eca_cbam", neck_attention="eca_cbam")
FEATHERFACE_ECA_CBAM_PARALLEL = replace(FEATHERFACE_CBAM_EXACT, backbone_attention="eca_cbam_parallel",
                                        neck_attention="eca_cbam_parallel")

# name -> (detector config, one-line description); kept as data so docs and tables can list them.
DETECTOR_CONFIGS: dict[str, tuple[DetectorConfig, str]] = {
    "retinaface_mnet025": (RETINAFACE_MNET025, "RetinaFace MobileNet-0.25 (Pytorch_Retinaface): FPN, SSH"),
    "featherface_v1": (FEATHERFACE_V1, "FeatherFace V1: CBAM, BiFPN x3, deformable SSH, channel shuffle"),
    "featherface_v2": (FEATHERFACE_V2, "FeatherFace V2: shared CBAM, BiFPN_Light x2 at 32 ch, grouped SSH, "
                                       "light shuffle"),
    "featherface_v1_bifpn_light": (replace(FEATHERFACE_V1, neck="bifpn_light"),
                                   "V1 ablation: BiFPN_Light (2 cells, 64 ch) instead of BiFPN"),
    "featherface_v1_ssh_grouped": (replace(FEATHERFACE_V1, context="grouped_ssh"),
                                   "V1 ablation: grouped SSH instead of deformable SSH"),
    "featherface_v1_shared_cbam": (replace(FEATHERFACE_V1, backbone_attention="shared_cbam",
                                           neck_attention="shared_cbam"),
                                   "V1 ablation: shared CBAM managers instead of per-level CBAMs"),
    "featherface_v1_shuffle_light": (replace(FEATHERFACE_V1, shuffle="shuffle_light"),
                                     "V1 ablation: light channel shuffle instead of V1's block"),
    "featherface_v1_v2_heads": (replace(FEATHERFACE_V1, head="shared_heads"),
                                "V1 ablation: V2's per-level shared heads"),
    "featherface_cbam_exact": (FEATHERFACE_CBAM_EXACT,
                               "Fork f023145 CBAM baseline: V1 at 52 channels, CBAM applied directly, "
                               "parameter-free shuffle"),
    "featherface_eca_cbam": (FEATHERFACE_ECA_CBAM,
                             "Fork f023145 ECA-CBAM: CBAM-exact with ECA -> SAM in sequence (WIDER FACE weights)"),
    "featherface_eca_cbam_parallel": (FEATHERFACE_ECA_CBAM_PARALLEL,
                                      "Fork f023145 ECA-CBAM parallel: one product mask M_c * M_s"),
    "featherface_v1_eca_cbam": (replace(FEATHERFACE_V1, backbone_attention="eca_cbam", neck_attention="eca_cbam"),
                                "V1 ablation: the fork's ECA -> SAM attention instead of CBAM"),
    "featherface_v1_eca_cbam_parallel": (replace(FEATHERFACE_V1, backbone_attention="eca_cbam_parallel",
                                                 neck_attention="eca_cbam_parallel"),
                                         "V1 ablation: the fork's parallel ECA * SAM attention instead of CBAM"),
}

# The ablation relation, declared rather than read from names: variant -> (the model it starts
# from, the one part it swaps). The study's ablation table lists exactly these rows, and a test
# checks that each changes only its part's config fields.
ONE_PART_SWAPS: dict[str, tuple[str, str]] = {
    "featherface_v1_bifpn_light": ("featherface_v1", "neck"),
    "featherface_v1_ssh_grouped": ("featherface_v1", "context"),
    "featherface_v1_shared_cbam": ("featherface_v1", "attention"),
    "featherface_v1_shuffle_light": ("featherface_v1", "shuffle"),
    "featherface_v1_v2_heads": ("featherface_v1", "head"),
    "featherface_v1_eca_cbam": ("featherface_v1", "attention"),
    "featherface_v1_eca_cbam_parallel": ("featherface_v1", "attention"),
    # the fork's own comparison, at its 52 channels: ECA-CBAM against its CBAM baseline
    "featherface_eca_cbam": ("featherface_cbam_exact", "attention"),
    "featherface_eca_cbam_parallel": ("featherface_cbam_exact", "attention"),
}

# Swaps that change how a part is laid out but not what it computes: trained and compared like any
# swap, their difference with the base is what a retraining alone moves, the noise floor beside which
# the real swaps are read, and their interval should contain 0 (variant -> why it computes the same).
PLACEBO_SWAPS: dict[str, str] = {
    "featherface_v1_v2_heads": "V2's per-level head layout computes what V1's heads compute, with the same "
                               "parameters (ffcore.models.heads.SharedHeads)",
}

# config fields of each part (attention serves the backbone and the neck stages together)
PART_FIELDS: dict[str, frozenset[str]] = {
    "attention": frozenset({"backbone_attention", "neck_attention"}),
    "neck": frozenset({"neck"}),
    "context": frozenset({"context"}),
    "shuffle": frozenset({"shuffle"}),
    "head": frozenset({"head"}),
}


def _register_configs() -> None:
    for name, (config, description) in DETECTOR_CONFIGS.items():
        def builder(_config=config, **overrides):
            return build_detector(_config, **overrides)

        builder.__doc__ = description
        register_model(name, description)(builder)


_register_configs()
