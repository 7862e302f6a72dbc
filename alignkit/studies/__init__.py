"""Studies: measured experiments built from the stages (each writes one run directory).

- `alignkit.studies.overoptimization`: reward over-optimisation, best-of-n and PPO against a
  weak proxy reward model (Gao, Schulman & Hilton 2022); `alignkit study overoptimization`.
"""
