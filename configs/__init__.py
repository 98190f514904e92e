"""ml_collections config files for run.py: `python run.py --config=configs/<name>.py`."""
