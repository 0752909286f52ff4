"""`edgenas run`: the whole path from a config (dataset, space, devices) to verified models and a report."""
