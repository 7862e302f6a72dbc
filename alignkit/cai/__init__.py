"""Constitutional AI (Bai et al. 2022): a versioned constitution, SL-CAI critique -> revision
data (`alignkit.cai.sl`) and RL-CAI / RLAIF preference labels (`alignkit.cai.label`).

Nothing is imported here: `import alignkit.cai` stays cheap (DESIGN.md, no import-time work).
"""
