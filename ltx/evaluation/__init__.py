"""Evaluation of generated videos: the demo world's vocabulary, held-out prompts and an attribute evaluator."""

from ltx.evaluation.demo_vocabulary import (
    BACKGROUNDS,
    COLOURS,
    DIRECTIONS,
    HELD_OUT_COMBINATIONS,
    SHAPES,
    WORLD_MOTIONS,
    DemoPrompt,
    SceneLabels,
    held_out_prompts,
    parse_caption,
    scene_caption,
    training_combinations,
)
from ltx.evaluation.demo_world import DemoWorldEvaluator, Prediction, predict, score

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "DIRECTIONS",
    "HELD_OUT_COMBINATIONS",
    "SHAPES",
    "WORLD_MOTIONS",
    "DemoPrompt",
    "DemoWorldEvaluator",
    "Prediction",
    "SceneLabels",
    "held_out_prompts",
    "parse_caption",
    "predict",
    "scene_caption",
    "score",
    "training_combinations",
]
