"""Evaluation networks: the PANNs CNN14 audio tagger behind the paper's objective metrics."""
