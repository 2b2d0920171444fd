"""Training: the loop (loop.py) and what it is made of: checkpoint, optim, precision, swa, distributed,
preemption, metrics. `python -m midiformer.train` runs __main__.py."""
