"""End-to-end recipes that chain the library's stages for one concrete goal.

- `alignkit.recipes.smollm2_safety`: make SmolLM2-135M-Instruct refuse clearly harmful requests
  without refusing benign look-alikes (`python -m alignkit.recipes.smollm2_safety --out OUT`).

Recipes sit above every other package (they import train, evals and pipeline); nothing in the
library imports a recipe.
"""
