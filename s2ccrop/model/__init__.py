"""The S2CNet model: backbone (MobileNetV2), spatial-semantic graph, heads, checkpoint loading.

Public: `S2CNet`, `S2CNetConfig`, `CONFIGS` (reference "GAICv1", "GAICv2"), `load_checkpoint`,
`save_checkpoint`, `model_from_state_dict`.
"""

from .checkpoint import infer_config, load_checkpoint, model_from_state_dict, read_state_dict, save_checkpoint
from .s2cnet import CONFIGS, GAICV1, GAICV2, MOS_MEAN, MOS_STD, S2CNet, S2CNetConfig

__all__ = [
    "CONFIGS",
    "GAICV1",
    "GAICV2",
    "MOS_MEAN",
    "MOS_STD",
    "S2CNet",
    "S2CNetConfig",
    "infer_config",
    "load_checkpoint",
    "model_from_state_dict",
    "read_state_dict",
    "save_checkpoint",
]
