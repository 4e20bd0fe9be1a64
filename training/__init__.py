"""The SDDR self-distillation training program (issue 9); run `python -m training`."""
