"""Evaluation: metrics, evidence (intervals, calibration, confounds, controls), stress tests, figures, model card."""
