"""Weight import: repssd checkpoints, ssd.pytorch, its ``vgg16_reducedfc.pth``, torchvision
(:mod:`.checkpoints`) and TF Object Detection API frozen graphs (:mod:`.tf_graph`).

    python -m repssd.convert tf-graph frozen_inference_graph.pb --out weights/model.pth [--labels person]
"""
from .checkpoints import (WeightsError, config_beside, convert_state_dict, detect_format, from_torchvision,
                          infer_num_classes, load_model, load_weights, read_weights)

__all__ = ["WeightsError", "load_weights", "read_weights", "convert_state_dict", "detect_format",
           "infer_num_classes", "from_torchvision", "load_model", "config_beside"]
