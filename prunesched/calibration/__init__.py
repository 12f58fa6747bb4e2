"""Calibration: the full model's per-step, per-block changes, and the threshold methods' schedules made from them.

``prunesched calibrate MODEL`` runs the full model on a few prompts with forward hooks
(:mod:`.recording`), stores what it saw as a JSON document (:mod:`.document`), and turns it into the fixed
schedules FirstBlockCache, TeaCache and MagCache would run at given thresholds (:mod:`.thresholds`). A search's
``[calibration]`` table (:mod:`prunesched.search.calibration`) evaluates those schedules as baselines and starts its
first generation from them. See docs/calibration.md.
"""
