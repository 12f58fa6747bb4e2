"""Evaluation: images for a schedule, their quality, and their cost.

Every candidate of a search is generated from the same prompts and per-image seeds (common random
numbers); quality is paired fidelity to the unaccelerated model's images and FID/KID through
torch-fidelity; cost is the timed denoising loop, a per-step cost model, or analytic MACs.
"""
