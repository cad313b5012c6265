"""LoRA adapters: applying them in the daemon, and training them (`ember adapter train`, train.py)."""
