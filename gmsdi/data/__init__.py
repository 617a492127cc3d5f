"""Data: the SynthSlakh renderer (`synth`), the Slakh2100-format loader (`slakh`), classes and prompts."""
