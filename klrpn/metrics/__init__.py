"""The paper's scoreboard: COCO AP suite, VOC07 mAP, proposal AR, parameter count, latency."""

from klrpn.metrics.coco_eval import coco_metrics, load_detections, results_filename, write_detections
from klrpn.metrics.model_stats import count_parameters, inference_latency
from klrpn.metrics.recall import proposal_recall
from klrpn.metrics.voc_eval import voc07_map

__all__ = ["coco_metrics", "voc07_map", "proposal_recall", "count_parameters",
           "inference_latency", "load_detections", "write_detections", "results_filename"]
